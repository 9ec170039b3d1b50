"""`kbh bench speed`: parameters, frames/s and peak memory per model at 230x306, batch 1, T = 1..N, on this
machine's CPU, for three ways of running the same weights, measured in the same run:

- eager:       model.eval() under torch.no_grad(), NCHW: the straightforward baseline;
- optimised:   torch.inference_mode, channels_last tensors and weights, BatchNorm folded into the convs
               (unet-b only: GroupNorm cannot be folded), initial states created channels_last;
- onnxruntime: the model exported to ONNX (all T iterations in one graph) run by ONNX Runtime's CPU provider.

The measuring processes run with OMP_WAIT_POLICY=PASSIVE by default (--omp-wait): on this shared 2-core machine
torch's busy-waiting OpenMP threads collapse (20x slower) whenever another job takes a core; ONNX Runtime's
spinning pool then gets allow_spinning=0 likewise.
torch.compile was tried and left out: on this machine it took ~85 s per model to compile (a C++ toolchain
is needed too) for a small gain. Threads: --threads (default 2) for torch and ONNX Runtime alike.

Timing runs in one child process (multiprocessing, spawned) per model, with the variants interleaved round by round and the median of
the rounds reported, so a load change on a shared machine hits every variant alike. Peak memory is the peak
resident set (ru_maxrss) of a child process per model and variant: the delta over the process before its first
inference is the activation memory. Training memory (--train-memory): peak RSS of a child doing a few SGD steps
at batch 8.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import time
from pathlib import Path

from .fresh_process import run_fresh

VARIANTS = ("eager", "optimised", "onnxruntime")
TRAIN_MEMORY_MODELS = ("sru0", "dru4")


# ----------------------------------------------------------------------------------------------- children
def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def _runner(model_name: str, variant: str, iterations: int, image, threads: int):
    """A no-argument callable running one forward of `iterations`, and a function returning its output."""
    import numpy as np
    import torch

    from training.models import build_model, fold_batchnorm

    torch.manual_seed(0)
    model = build_model(model_name).eval()
    if variant == "eager":
        def run():
            with torch.no_grad():
                return torch.stack(model(image, iterations=iterations))
        return run
    if variant == "optimised":
        fold_batchnorm(model)
        model = model.to(memory_format=torch.channels_last)
        x = image.contiguous(memory_format=torch.channels_last)

        def run():
            with torch.inference_mode():
                return torch.stack(model(x, iterations=iterations))
        return run
    if variant == "onnxruntime":
        import io

        from training.onnx_export import export_onnx, ort_session

        buffer = io.BytesIO()
        export_onnx(model, buffer, mode="all", iterations=iterations, height=image.shape[-2], width=image.shape[-1])
        # same waiting policy as torch's OpenMP threads in this process (see _spawn)
        spin = os.environ.get("OMP_WAIT_POLICY", "").upper() != "PASSIVE"
        session = ort_session(buffer.getvalue(), threads=threads, spin=spin)
        feed = {"image": image.numpy()}

        def run():
            return torch.from_numpy(np.asarray(session.run(["logits"], feed)[0]))
        return run
    raise ValueError(f"unknown variant {variant!r}; expected one of {', '.join(VARIANTS)}")


def _image(height: int, width: int):
    import torch

    return torch.randn(1, 3, height, width, generator=torch.Generator().manual_seed(0))


def child_timing(job: dict) -> dict:
    import torch

    torch.set_num_threads(job["threads"])
    image = _image(*job["size"])
    results = []
    for t in job["iterations"]:
        runners = {v: _runner(job["model"], v, t, image, job["threads"]) for v in job["variants"]}
        outputs = {v: run() for v, run in runners.items()}  # also the warm-up
        ref = outputs.get("eager", next(iter(outputs.values())))
        # calls per measurement: enough for ~min_seconds with the slowest variant
        start = time.perf_counter()
        for run in runners.values():
            run()
        per_call = (time.perf_counter() - start) / len(runners)
        calls = max(1, int(job["min_seconds"] / max(per_call, 1e-6)))
        fps: dict[str, list[float]] = {v: [] for v in runners}
        cpu_ms: dict[str, list[float]] = {v: [] for v in runners}
        for _ in range(job["rounds"]):
            for v, run in runners.items():
                start, cpu_start = time.perf_counter(), time.process_time()
                for _ in range(calls):
                    run()
                fps[v].append(calls / (time.perf_counter() - start))
                # CPU time of all this process's threads per frame: less sensitive to other jobs than wall
                # time (busy-waiting thread pools still inflate it when a peer thread is descheduled)
                cpu_ms[v].append(1000 * (time.process_time() - cpu_start) / calls)
        for v in runners:
            results.append({"iterations": t, "variant": v, "fps": statistics.median(fps[v]),
                            "fps_rounds": fps[v], "cpu_ms_per_frame": statistics.median(cpu_ms[v]),
                            "max_abs_diff_to_eager": float((outputs[v] - ref).abs().max())})
    return {"timing": results}


def child_memory(job: dict) -> dict:
    import torch

    torch.set_num_threads(job["threads"])
    image = _image(*job["size"])
    run = _runner(job["model"], job["variant"], job["iterations"], image, job["threads"])
    before = _rss_mb()
    for _ in range(2):
        run()
    peak = _rss_mb()
    return {"peak_rss_mb": peak, "inference_mb": peak - before}


def child_train_memory(job: dict) -> dict:
    import torch
    import torch.nn.functional as F

    from training.models import build_model

    torch.set_num_threads(job["threads"])
    torch.manual_seed(0)
    model = build_model(job["model"]).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9, weight_decay=1e-4)
    height, width = job["size"]
    x = torch.randn(job["batch"], 3, height, width)
    target = (torch.rand(job["batch"], height, width) > 0.5).long()
    before = _rss_mb()
    times = []
    for _ in range(job["steps"]):
        start = time.perf_counter()
        outs = model(x)
        n = len(outs)  # the loss: sum_t alpha^(N-t) CE_t, alpha = 0.4
        loss = sum(0.4 ** (n - 1 - k) * F.cross_entropy(o, target) for k, o in enumerate(outs))
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
        optimizer.step()
        times.append(time.perf_counter() - start)
    return {"peak_rss_mb": _rss_mb(), "before_mb": before, "seconds_per_step": statistics.median(times)}


CHILDREN = {"timing": child_timing, "memory": child_memory, "train_memory": child_train_memory}


def _spawn(kind: str, job: dict, timeout: float = 3600, omp_wait: str | None = None) -> dict:
    """Run a child in a fresh interpreter (clean peak-RSS accounting, no state shared between models).

    omp_wait sets OMP_WAIT_POLICY for the child (before its OpenMP runtime starts). On a shared 2-core machine
    torch's default (busy-waiting) OpenMP threads collapse when a peer thread is descheduled: dru4 went from 25
    to 1 frame/s with 2 threads at a load average of 3; PASSIVE avoids that. With PASSIVE the ONNX Runtime
    session does not spin either (the same policy for both)."""
    return run_fresh(CHILDREN[kind], job, env={"OMP_WAIT_POLICY": omp_wait} if omp_wait else None,
                     timeout=timeout, what=f"{kind} child for {job.get('model')}")


# ----------------------------------------------------------------------------------------------- parent
def measure(models: list[str], iterations: list[int], variants: list[str], size=(230, 306), threads: int = 2,
            rounds: int = 5, min_seconds: float = 0.5, memory: bool = True, train_memory: bool = False,
            omp_wait: str | None = "PASSIVE", log=print) -> dict:
    """Measure every model; returns {"rows": [...], "train_memory": [...], "setup": {...}}."""
    import torch

    from training.models import build_model, count_parameters

    rows = []
    for name in models:
        params = count_parameters(build_model(name))
        recurrent = build_model(name).recurrent
        its = iterations if recurrent else [1]
        log(f"  {name}: timing T={','.join(map(str, its))} ({', '.join(variants)}) ...")
        timing = _spawn("timing", {"model": name, "iterations": its, "variants": variants, "size": list(size),
                                   "threads": threads, "rounds": rounds, "min_seconds": min_seconds},
                        omp_wait=omp_wait)["timing"]
        mem = {}
        if memory:
            for v in variants:
                mem[v] = _spawn("memory", {"model": name, "variant": v, "iterations": max(its),
                                           "size": list(size), "threads": threads}, omp_wait=omp_wait)
        for t in its:
            row = {"model": name, "parameters": params, "iterations": t}
            for r in timing:
                if r["iterations"] == t:
                    row[f"fps_{r['variant']}"] = r["fps"]
                    row[f"cpu_ms_{r['variant']}"] = r["cpu_ms_per_frame"]
                    row[f"diff_{r['variant']}"] = r["max_abs_diff_to_eager"]
            if t == max(its):
                for v, m in mem.items():
                    row[f"mem_{v}_mb"] = m["inference_mb"]
                    row[f"peak_rss_{v}_mb"] = m["peak_rss_mb"]
            rows.append(row)
    train = []
    if train_memory:
        for name in TRAIN_MEMORY_MODELS:
            log(f"  {name}: training memory at batch 8 ...")
            r = _spawn("train_memory", {"model": name, "batch": 8, "size": list(size), "steps": 3, "threads": threads},
                       omp_wait=omp_wait)
            train.append({"model": name, "batch": 8, **r})
    setup = {"size": list(size), "batch": 1, "threads": threads, "rounds": rounds, "torch": torch.__version__,
             "omp_wait_policy": omp_wait or os.environ.get("OMP_WAIT_POLICY", "default"),
             "cpu": _cpu_name(), "load_average_at_end": os.getloadavg()}
    try:
        import onnxruntime

        setup["onnxruntime"] = onnxruntime.__version__
    except ImportError:
        pass
    return {"rows": rows, "train_memory": train, "setup": setup}


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def format_table(result: dict) -> str:
    variants = [v for v in VARIANTS if any(f"fps_{v}" in r for r in result["rows"])]
    short = {"eager": "eager", "optimised": "opt", "onnxruntime": "ORT"}
    head = ["model", "params", "T"] + [f"{short[v]} f/s" for v in variants]
    head += [f"{short[v]}/eager" for v in variants if v != "eager" and "eager" in variants]
    head += [f"{short[v]} CPU ms" for v in variants]
    head += [f"{short[v]} MB" for v in variants]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in result["rows"]:
        cells = [r["model"], f"{r['parameters']:,}", str(r["iterations"])]
        cells += [f"{r[f'fps_{v}']:.1f}" for v in variants]
        cells += [f"{r[f'fps_{v}'] / r['fps_eager']:.2f}x" for v in variants if v != "eager" and "eager" in variants]
        cells += [f"{r[f'cpu_ms_{v}']:.0f}" for v in variants]
        cells += [f"{r[f'mem_{v}_mb']:.0f}" if f"mem_{v}_mb" in r else "" for v in variants]
        lines.append("| " + " | ".join(cells) + " |")
    s = result["setup"]
    lines.append("")
    lines.append(f"{s['size'][0]}x{s['size'][1]}, batch 1, {s['threads']} threads "
                 f"(OMP_WAIT_POLICY {s.get('omp_wait_policy', 'default')}), median of {s['rounds']} rounds; "
                 f"CPU ms = CPU time of all threads per frame; "
                 f"MB = peak resident memory added by inference at the largest T; torch {s['torch']}"
                 + (f", onnxruntime {s['onnxruntime']}" if "onnxruntime" in s else "")
                 + f"; CPU {s['cpu']}; load average at end {', '.join(f'{x:.1f}' for x in s['load_average_at_end'])}")
    diffs = [r[k] for r in result["rows"] for k in r if k.startswith("diff_")]
    if diffs:
        lines.append(f"largest difference of any variant's logits from eager: {max(diffs):.2g}")
    for t in result["train_memory"]:
        lines.append(f"training {t['model']}, batch {t['batch']}, {s['size'][0]}x{s['size'][1]}, SGD: peak RSS "
                     f"{t['peak_rss_mb']:.0f} MB ({t['seconds_per_step']:.1f} s/step)")
    return "\n".join(lines)


def load_eval(path: Path) -> dict:
    from kbh.errors import KbhError

    try:
        report = json.loads(Path(path).read_text())
        per = {int(r["iteration"]): r["miou"] for r in report["per_iteration"]}
        return {"model": str(report["model"]), "miou": per}
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise KbhError(f"{path}: not a `kbh eval --json` file ({e.__class__.__name__}: {e})") from None


def plot_accuracy_vs_speed(result: dict, evals: list[dict], path: Path, variant: str = "optimised") -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from kbh.atomic_file import atomic_path

    # several eval files of one model (training seeds): plot their mean per iteration
    by_model: dict[str, list[dict]] = {}
    for ev in evals:
        by_model.setdefault(ev["model"], []).append(ev["miou"])
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for model, runs in by_model.items():
        pts = []
        for r in result["rows"]:
            vals = [m.get(r["iterations"]) for m in runs]
            if r["model"] == model and f"fps_{variant}" in r and vals and all(v is not None for v in vals):
                pts.append((r[f"fps_{variant}"], sum(vals) / len(vals), r["iterations"]))
        if not pts:
            continue
        pts.sort(key=lambda p: p[2])
        xs, ys, _ = zip(*pts)
        ax.plot(xs, ys, "o-", label=model + (f" (mean of {len(runs)})" if len(runs) > 1 else ""))
        for x_, y_, t_ in pts:
            ax.annotate(f"T={t_}", (x_, y_), textcoords="offset points", xytext=(4, 4), fontsize=7)
    ax.set_xscale("log")
    ax.set_xlabel(f"frames/s ({variant}, {result['setup']['threads']} CPU threads, "
                  f"{result['setup']['size'][0]}x{result['setup']['size'][1]})")
    ax.set_ylabel("test mIoU")
    ax.set_title("accuracy vs speed")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)
    return path


# ----------------------------------------------------------------------------------------------- command
def _int_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        values = []
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: expected positive integers separated by commas, e.g. 1,2,3")
    return sorted(set(values))


def _str_list(text: str) -> list[str]:
    return [v.strip() for v in text.split(",") if v.strip()]


def register(bench_sub) -> None:
    from training.cli import size_arg

    b = bench_sub.add_parser("speed", help="frames/s and memory per model: eager vs optimised torch vs ONNX Runtime")
    b.add_argument("--models", nargs="+", metavar="NAME", help="models to measure (default: all)")
    b.add_argument("--iterations", type=_int_list, default=[1, 2, 3], help="T values, e.g. 1,2,3 (default)")
    b.add_argument("--variants", type=_str_list, default=["eager", "optimised", "onnxruntime"],
                   help="comma-separated subset of eager,optimised,onnxruntime (default: all three)")
    b.add_argument("--eval", nargs="+", metavar="FILE", help="`kbh eval --json` files: plot accuracy vs speed")
    b.add_argument("--out", metavar="DIR", help="write speed.json, speed.md (and accuracy_vs_speed.png) here")
    b.add_argument("--size", type=size_arg, default=(230, 306), help="HEIGHTxWIDTH (default 230x306)")
    b.add_argument("--threads", type=int, default=2, help="CPU threads for torch and ONNX Runtime (default 2)")
    b.add_argument("--rounds", type=int, default=5, help="interleaved timing rounds; the median is reported")
    b.add_argument("--min-seconds", type=float, default=0.5, help="length of one timing measurement")
    b.add_argument("--no-memory", action="store_true", help="skip the peak-memory child processes")
    b.add_argument("--train-memory", action="store_true", help="also measure sru0/dru4 training memory at batch 8")
    b.add_argument("--omp-wait", choices=("PASSIVE", "ACTIVE", "default"), default="PASSIVE",
                   help="OMP_WAIT_POLICY of the measuring processes (default PASSIVE: busy-waiting torch threads "
                        "collapse on a shared machine)")
    b.set_defaults(func=run_bench_speed)


def run_bench_speed(args) -> int:
    """`kbh bench speed` handler."""
    from kbh.errors import KbhError
    from kbh.atomic_file import atomic_write_bytes
    from training.models import MODEL_NAMES

    models = args.models or list(MODEL_NAMES)
    unknown = [m for m in models if m not in MODEL_NAMES]
    if unknown:
        raise KbhError(f"unknown model(s) {', '.join(unknown)}; known: {', '.join(MODEL_NAMES)}")
    variants = args.variants
    bad = [v for v in variants if v not in VARIANTS]
    if bad:
        raise KbhError(f"unknown variant(s) {', '.join(bad)}; known: {', '.join(VARIANTS)}")
    evals = [load_eval(Path(p)) for p in args.eval or []]
    print(f"kbh bench speed: {len(models)} model(s), load average now {os.getloadavg()[0]:.1f}")
    result = measure(models, args.iterations, variants, size=tuple(args.size), threads=args.threads,
                     rounds=args.rounds, min_seconds=args.min_seconds, memory=not args.no_memory,
                     train_memory=args.train_memory, omp_wait=None if args.omp_wait == "default" else args.omp_wait)
    table = format_table(result)
    print(table)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(out / "speed.json", (json.dumps(result, indent=1) + "\n").encode())
        atomic_write_bytes(out / "speed.md", (table + "\n").encode())
        print(f"wrote {out / 'speed.json'}, {out / 'speed.md'}")
        if evals:
            print(f"wrote {plot_accuracy_vs_speed(result, evals, out / 'accuracy_vs_speed.png')}")
    elif evals:
        print("note: --eval given without --out; no plot written")
    return 0
