"""Writing synthetic persons into a workspace, with worker processes rendering while this one writes (kbh.synth)."""

from __future__ import annotations

import sys
import time

import cv2
import numpy as np

from ..errors import KbhError
from ..imageio import sha256_bytes, write_png
from .attributes import person_attributes, sequence_attributes
from .render import _check_size, check_request, render_sequence

# ---------------------------------------------------------------------------------------------------------------
# Workspace

def _png(array: np.ndarray) -> bytes:
    """Lossless PNG bytes. Sensor noise makes frames compress poorly whatever the effort, so use the cheapest
    setting that still compresses (level 1, run-length strategy: ~2x faster than level 3 and smaller here)."""
    if array.ndim == 3:
        array = cv2.cvtColor(array, cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(".png", array, [cv2.IMWRITE_PNG_COMPRESSION, 1,
                                           cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_RLE])
    if not ok:
        raise KbhError("could not encode a synthetic frame as PNG")
    return buf.tobytes()


def sequence_seed(seed: int, person: int, sequence: int) -> int:
    """The render seed of (person, sequence) under a workspace seed."""
    return int(np.random.SeedSequence([seed, person, sequence, 2]).generate_state(1)[0])


def _encoded(seed, n_frames, size, person_attrs, sequence_attrs):
    """One sequence as (PNG bytes, mask) pairs, lazily."""
    for image, mask in render_sequence(seed, n_frames, size, person_attrs, sequence_attrs):
        yield _png(image), mask


def _encoded_list(job) -> list:
    """Worker-process entry: a whole sequence, encoded (kept small: a sequence of 230x306 frames is ~10 MB)."""
    cv2.setNumThreads(1)
    return list(_encoded(*job))


def _default_workers(total_frames: int) -> int:
    import os

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    # Starting processes costs about a second; only worth it for a large run.
    return 1 if total_frames < 2000 else max(1, min(cores, 8))


def synthesize_workspace(ws, persons: int, sequences_per_person: int, frames: int, size=(230, 306),
                         seed: int = 0, labeled: bool = True, progress: bool = True,
                         workers: int | None = None) -> dict:
    """Add `persons` synthetic persons ("p000", ...), each with `sequences_per_person` sequences ("p000_s00", ...)
    of `frames` frames, with attributes. Labeled: the exact mask is stored as a finished annotation (status
    done, source import). Unlabeled: frames stay unlabeled and the mask goes to WS/ground_truth/<frame id>.png
    (0/255). One transaction per sequence. `workers` processes render and encode sequences while this one
    writes (default: one per core for runs of 2000 frames or more, else none); the result does not depend on
    it. Returns {"persons", "sequences", "frames", "seconds"}."""
    from collections import deque

    from tqdm import tqdm

    check_request(persons, sequences_per_person, frames, size)
    h, w = _check_size(size)
    existing = ws.persons()
    clash = [f"p{p:03d}" for p in range(persons) if f"p{p:03d}" in existing]
    if clash:
        raise KbhError(f"{ws.root}: already holds person {clash[0]!r}; synthesize into a new workspace")
    start = time.perf_counter()
    total = persons * sequences_per_person * frames
    workers = _default_workers(total) if workers is None else max(1, int(workers))

    plan = []  # (person index, sequence index, person attrs, sequence attrs, render job), in writing order
    for p in range(persons):
        pattrs = person_attributes(np.random.default_rng([seed, p]))
        for s in range(sequences_per_person):
            sattrs = sequence_attributes(np.random.default_rng([seed, p, s, 1]))
            plan.append((p, s, pattrs, sattrs, (sequence_seed(seed, p, s), frames, (h, w), pattrs, sattrs)))

    def sequences():
        if workers == 1:
            for *head, job in plan:
                yield (*head, _encoded(*job))
            return
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        # A bounded window of sequences in flight keeps memory flat when writing is the slower side.
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            pending: deque = deque()
            todo = iter(plan)
            for item in todo:
                pending.append((item[:4], pool.submit(_encoded_list, item[4])))
                if len(pending) >= 2 * workers:
                    break
            while pending:
                head, fut = pending.popleft()
                if (item := next(todo, None)) is not None:
                    pending.append((item[:4], pool.submit(_encoded_list, item[4])))
                yield (*head, fut.result())

    with tqdm(total=total, desc="synth", unit="frame", disable=not progress, file=sys.stderr,
              dynamic_ncols=True) as bar:
        for p, s, pattrs, sattrs, encoded in sequences():
            pid = f"p{p:03d}"
            sid = f"{pid}_s{s:02d}"
            with ws.transaction():
                if s == 0:
                    ws.upsert_person(pid, pattrs)
                ws.upsert_sequence(sid, pid, sattrs)
                for i, (data, mask) in enumerate(encoded):
                    fid = ws.add_frame(sid, i, data, ".png", w, h, sha256_bytes(data))
                    if labeled:
                        ws.save_annotation(fid, mask=mask, status="done", source="import")
                    else:
                        write_png(ws.ground_truth_path(fid), mask * np.uint8(255))
                    bar.update(1)
    return {"persons": persons, "sequences": len(plan), "frames": total,
            "seconds": time.perf_counter() - start}
