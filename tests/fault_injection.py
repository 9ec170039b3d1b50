"""Kill kbh at random points and check that nothing is ever half-done (issue 9).

    python -m tests.fault_injection --kills 20 --seed 0        # from the repository root

Four targets, each killed `--kills` times with SIGKILL after a seeded random delay spread over the time a
complete run takes:
- `kbh import` of 40 frames with masks into a workspace that already holds 4: afterwards the workspace holds the
  4 (old) or all 44 with their masks (new); once reopened for writing, every file on disk is named by a row
  and every named file exists.
- `kbh split` into a new folder: afterwards the folder is absent (old) or a complete split that verifies (new).
- `kbh split --overwrite` over an existing split: the folder verifies with the old manifest id or the new one.
- an annotator session (the real window, offscreen) drawing strokes on frame after frame: every frame's stored
  mask is exactly what its stored strokes give (GrabCut of the scribbles, then the direct edits): the mask never
  runs ahead of or behind its strokes.
For every split folder a kill leaves (the target and any staging folder beside it), the at-open check that
`kbh train` and `kbh eval` run must refuse it exactly when `kbh verify` does.
The test suite runs this at 20 kills each (tests/test_fault_injection.py); figures go in benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
KBH = [sys.executable, "-m", "kbh.cli"]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "QT_QPA_PLATFORM": "offscreen"}


@dataclass
class Tally:
    target: str
    kills: int = 0
    states: Counter = field(default_factory=Counter)  # "old", "new", "consistent", or "MIXED: why", per run
    notes: Counter = field(default_factory=Counter)
    seconds: float = 0.0

    @property
    def mixed(self) -> list[str]:
        return [s for s in self.states if s.startswith("MIXED")]

    def row(self) -> str:
        states = ", ".join(f"{k} {v}" for k, v in sorted(self.states.items()))
        notes = "; ".join(f"{k}: {v}" for k, v in sorted(self.notes.items()))
        return f"| {self.target} | {self.kills} | {states} | {notes or '-'} | {self.seconds:.0f} s |"


def kill_after(argv: list[str], delay: float, cwd: Path | None = None) -> int | None:
    """Start `argv`, SIGKILL it after `delay` seconds; the exit code if it finished first, else None."""
    proc = subprocess.Popen(argv, cwd=cwd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        rc = proc.wait(timeout=delay)
        err = proc.stderr.read().decode()
        if rc != 0:
            raise RuntimeError(f"{' '.join(argv[2:4])} failed before the kill (rc {rc}): {err[-400:]}")
        return rc
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        return None
    finally:
        proc.stderr.close()


def timed(argv: list[str]) -> float:
    t = time.perf_counter()
    subprocess.run(argv, env=ENV, check=True, capture_output=True)
    return time.perf_counter() - t


def make_workspace(root: Path, persons: int, frames: int, hw=(48, 64), labeled: bool = True, seed: int = 0):
    from tests.helpers import make_ws

    return make_ws(root, {f"p{i}": {f"s{i}": frames} for i in range(persons)}, hw=hw,
                   status="done" if labeled else None, seed=seed)


def make_source(folder: Path, n: int, seed: int = 1) -> None:
    rng = np.random.default_rng(seed)
    for i in range(n):
        img = rng.integers(0, 256, (96, 128, 3), dtype=np.uint8)
        mask = (rng.random((96, 128)) > 0.7).astype(np.uint8) * 255
        (folder / "images").mkdir(parents=True, exist_ok=True)
        (folder / "masks").mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(folder / "images" / f"q{i % 4}_{i:03d}.png"), img)
        cv2.imwrite(str(folder / "masks" / f"q{i % 4}_{i:03d}.png"), mask)


# -- import --------------------------------------------------------------------------------------------------
def files_on_disk(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for d in ("frames", "masks", "predictions") for p in (root / d).rglob("*")
            if p.is_file()}


def import_state(root: Path, old: int, added: int) -> tuple[str, int]:
    from kbh.workspace import Workspace

    with Workspace.open(root, readonly=True) as ws:
        n = ws.count_frames()
        masked = n - len(ws.frames_without_mask())
    if n == old and masked == old:
        state = "old"
    elif n == old + added and masked == old + added:
        state = "new"
    else:
        return f"MIXED: {n} frames, {masked} masks", 0
    with Workspace.open(root) as ws:  # the next writer: sweeps what the killed import staged
        swept = ws.swept[0]
        named, disk = ws.referenced_files(), files_on_disk(root)
        ok = ws.integrity_check()
    if disk != named:
        return f"MIXED: {len(disk - named)} unnamed file(s), {len(named - disk)} missing", swept
    if ok != "ok":
        return f"MIXED: database {ok}", swept
    return state, swept


def run_import(kills: int, seed: int, work: Path) -> Tally:
    tally, rng = Tally("`kbh import` (40 frames + masks)"), np.random.default_rng(seed)
    base, src = work / "import_base", work / "import_src"
    make_workspace(base, persons=2, frames=2)
    make_source(src, 40)
    argv = lambda ws: [*KBH, "import", str(ws), str(src / "images"), "--masks", str(src / "masks"),  # noqa: E731
                       "--person-regex", r"^(q\d)_", "--quiet"]
    start = timed([*KBH, "--version"])
    probe = work / "import_probe"
    shutil.copytree(base, probe)
    full = timed(argv(probe))
    t0 = time.perf_counter()
    k = 0
    while tally.kills < kills and k < 3 * kills:  # runs that finish before their kill do not count as kills
        k += 1
        ws = work / f"import_{k}"
        shutil.copytree(base, ws)
        finished = kill_after(argv(ws), float(rng.uniform(start * 0.8, full * 1.05)))
        state, swept = import_state(ws, old=4, added=40)
        tally.kills += finished is None
        tally.states[state] += 1
        tally.notes["orphaned files swept"] += swept
        tally.notes["runs that finished before their kill"] += finished is not None
        shutil.rmtree(ws)
    tally.seconds = time.perf_counter() - t0
    return tally


# -- split ---------------------------------------------------------------------------------------------------
def split_argv(ws: Path, out: Path, seed: int, overwrite: bool = False) -> list[str]:
    return [*KBH, "split", str(ws), "--by-person", "34/33/33", "--seed", str(seed), "--out", str(out), "--size",
            "96x128", "--name", "kill-test", "--no-progress", *(["--overwrite"] if overwrite else [])]


def check_agrees_with_verify(folder: Path) -> str | None:
    """None if the at-open check (train/eval) and verify agree on `folder`, else the disagreement."""
    from kbh.errors import KbhError
    from kbh.shards import verify
    from kbh.split_folder import open_split_folder

    try:
        open_split_folder(folder)
        opens = True
    except KbhError:
        opens = False
    try:
        verified = verify(folder).ok
    except KbhError:
        verified = False
    if verified and not opens:
        return f"train refuses {folder.name}, which verifies"
    if opens and not verified:
        return f"train accepts {folder.name}, which verify refuses"
    return None


def split_state(out: Path, ids: dict[str, str | None]) -> str:
    """'old' / 'new' by the manifest id found at `out` (None: no folder), else MIXED."""
    from kbh.manifest import read_manifest
    from kbh.shards import verify

    for folder in [out, *out.parent.glob(f".{out.name}.staging-*")]:
        if folder.exists() and (why := check_agrees_with_verify(folder)):
            return f"MIXED: {why}"
    if not out.exists():
        return "old" if ids["old"] is None else "MIXED: the old split is gone"
    rep = verify(out)
    if not rep.ok:
        return f"MIXED: {rep.problems[0][-80:]}"
    mid = read_manifest(out / "manifest.json")["manifest_id"]
    return next((k for k, v in ids.items() if v == mid), f"MIXED: unknown manifest {mid}")


def run_split(kills: int, seed: int, work: Path, overwrite: bool) -> Tally:
    from kbh.manifest import read_manifest

    name = "`kbh split --overwrite` (old split in place)" if overwrite else "`kbh split` (new folder)"
    tally, rng = Tally(name), np.random.default_rng(seed + (1 if overwrite else 0))
    ws = make_workspace(work / ("ws_over" if overwrite else "ws_fresh"), persons=6, frames=12, hw=(192, 256))
    out = work / ("over" if overwrite else "fresh")
    reference = work / ("over_ref" if overwrite else "fresh_ref")
    subprocess.run(split_argv(ws, reference / "old", 0), env=ENV, check=True, capture_output=True)
    start = timed([*KBH, "--version"])
    full = timed(split_argv(ws, reference / "new", 1))
    ids = {"old": read_manifest(reference / "old" / "manifest.json")["manifest_id"] if overwrite else None,
           "new": read_manifest(reference / "new" / "manifest.json")["manifest_id"]}
    t0 = time.perf_counter()
    k = 0
    while tally.kills < kills and k < 3 * kills:
        k += 1
        shutil.rmtree(out, ignore_errors=True)
        for p in out.parent.glob(f".{out.name}.*"):
            shutil.rmtree(p) if p.is_dir() else p.unlink()
        if overwrite:
            shutil.copytree(reference / "old", out)
        finished = kill_after(split_argv(ws, out, 1, overwrite), float(rng.uniform(start * 0.8, full * 1.05)))
        tally.kills += finished is None
        tally.states[split_state(out, ids)] += 1
        tally.notes["staging folders left (removed by the next split)"] += len(list(
            out.parent.glob(f".{out.name}.staging-*")))
        tally.notes["runs that finished before their kill"] += finished is not None
    # The next writer clears what the kills left, and the split it writes verifies.
    subprocess.run(split_argv(ws, out, 1, overwrite=True), env=ENV, check=True, capture_output=True)
    left = [p.name for p in out.parent.glob(f".{out.name}.*") if p.is_dir()]
    if left or split_state(out, ids) != "new":
        tally.states[f"MIXED: the next split left {left}"] += 1
    tally.seconds = time.perf_counter() - t0
    return tally


# -- annotator -----------------------------------------------------------------------------------------------
ANNOTATOR_CHILD = r"""
import os, sys, tempfile
import numpy as np
from PySide6.QtCore import QPointF, QSettings, Qt
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication
from annotator.window import AnnotatorWindow
from kbh.workspace import Workspace

rng = np.random.default_rng(int(sys.argv[2]))
app = QApplication([])
settings = QSettings(os.path.join(tempfile.mkdtemp(), "s.ini"), QSettings.Format.IniFormat)
win = AnnotatorWindow(Workspace.open(sys.argv[1]), settings=settings, annotator="fault-injection")
win.resize(800, 600)
win.show()
QTest.qWaitForWindowExposed(win)
win.set_radius(3)
print("ready", flush=True)
h, w = win.session.mask.shape
while True:  # until killed: strokes on this frame, now and then the next frame
    button = Qt.MouseButton.LeftButton if rng.random() < 0.6 else Qt.MouseButton.RightButton
    x, y = rng.integers(4, w - 4), rng.integers(4, h - 4)
    pts = [(x, y), (min(w - 2, x + rng.integers(0, 20)), min(h - 2, y + rng.integers(-5, 6)))]
    vp = win.canvas.viewport()
    pos = [win.canvas.mapFromScene(QPointF(px + 0.5, py + 0.5)) for px, py in pts]
    QTest.mousePress(vp, button, Qt.KeyboardModifier.NoModifier, pos[0])
    QTest.mouseMove(vp, pos[1])
    QTest.mouseRelease(vp, button, Qt.KeyboardModifier.NoModifier, pos[1])
    QTest.qWait(int(rng.integers(0, 40)))
    if rng.random() < 0.25:
        win.go_todo(1)
"""


def annotator_state(root: Path) -> tuple[str, int]:
    from kbh.engines import engine_factory
    from kbh.strokes import compose, scribbles
    from kbh.workspace import Workspace

    grabcut = engine_factory("grabcut")
    with Workspace.open(root) as ws:  # as the next session would: sweeps first
        named, disk = ws.referenced_files(), files_on_disk(root)
        if not named <= disk:
            return f"MIXED: {len(named - disk)} named file(s) missing", 0
        n = 0
        for f in ws.frames():
            strokes = ws.strokes(f.id)
            if not strokes:
                continue
            n += 1
            stored = ws.mask(f)
            expected = compose(grabcut(ws.image(f), None).update(scribbles(strokes)), strokes)
            if stored is None or not np.array_equal(stored, expected):
                return f"MIXED: frame {f.key}: stored mask is not GrabCut of its {len(strokes)} stored strokes", n
    return "consistent", n


def run_annotator(kills: int, seed: int, work: Path) -> Tally:
    tally, rng = Tally("annotator session (real window, offscreen)"), np.random.default_rng(seed + 2)
    ws = make_workspace(work / "ws_annotate", persons=2, frames=6, hw=(60, 80), labeled=False)
    t0 = time.perf_counter()
    for k in range(kills):
        proc = subprocess.Popen([sys.executable, "-c", ANNOTATOR_CHILD, str(ws), str(seed * 1000 + k)], env=ENV,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)
        line = proc.stdout.readline()  # the window is up
        if b"ready" not in line:
            raise RuntimeError(f"annotator child did not start: {proc.stderr.read().decode()[-600:]}")
        time.sleep(float(rng.uniform(0.05, 2.5)))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
        proc.stderr.close()
        tally.kills += 1
        state, frames = annotator_state(ws)
        tally.states[state] += 1
        tally.notes["frames with strokes at the end"] = frames
    tally.seconds = time.perf_counter() - t0
    return tally


def run_all(kills: int, seed: int, work: Path, targets=("import", "split", "overwrite", "annotator")) -> list[Tally]:
    out = []
    for t in targets:
        if t == "import":
            out.append(run_import(kills, seed, work))
        elif t == "split":
            out.append(run_split(kills, seed, work, overwrite=False))
        elif t == "overwrite":
            out.append(run_split(kills, seed, work, overwrite=True))
        elif t == "annotator":
            out.append(run_annotator(kills, seed, work))
        print(out[-1].row(), flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--kills", type=int, default=20, help="kills per target (default %(default)s)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--only", action="append", choices=["import", "split", "overwrite", "annotator"])
    args = p.parse_args(argv)
    print(f"fault injection: {args.kills} kills per target, seed {args.seed}, load {os.getloadavg()[0]:.1f} "
          f"on {os.cpu_count()} cores")
    print("| target | kills | states found after the kills | notes | time |\n|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        tallies = run_all(args.kills, args.seed, Path(tmp), tuple(args.only or ("import", "split", "overwrite",
                                                                                 "annotator")))
    bad = [m for t in tallies for m in t.mixed]
    print("never a mix of old and new" if not bad else f"MIXED STATES: {bad}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
