"""Sub-commands `kbh models`, `kbh bench speed`, `kbh export-model` (torch is imported inside the handlers)."""

from __future__ import annotations

import argparse


def _size(text: str) -> tuple[int, int]:
    """kbh.shards.parse_size as an argparse type (the models need at least 16 pixels a side)."""
    from kbh.errors import KbhError
    from kbh.shards import parse_size

    try:
        return parse_size(text, min_side=16)
    except KbhError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


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


def register(sub, bench_sub) -> None:
    p = sub.add_parser("models", help="list every model with its parameter count")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=run_models)

    b = bench_sub.add_parser("speed", help="frames/s and memory per model: eager vs optimised torch vs ONNX Runtime")
    b.add_argument("--models", nargs="+", metavar="NAME", help="models to measure (default: all)")
    b.add_argument("--iterations", type=_int_list, default=[1, 2, 3], help="T values, e.g. 1,2,3 (default)")
    b.add_argument("--variants", type=_str_list, default=["eager", "optimised", "onnxruntime"],
                   help="comma-separated subset of eager,optimised,onnxruntime (default: all three)")
    b.add_argument("--eval", nargs="+", metavar="FILE", help="`kbh eval --json` files: plot accuracy vs speed")
    b.add_argument("--out", metavar="DIR", help="write speed.json, speed.md (and accuracy_vs_speed.png) here")
    b.add_argument("--size", type=_size, default=(230, 306), help="HEIGHTxWIDTH (default 230x306)")
    b.add_argument("--threads", type=int, default=2, help="CPU threads for torch and ONNX Runtime (default 2)")
    b.add_argument("--rounds", type=int, default=5, help="interleaved timing rounds; the median is reported")
    b.add_argument("--min-seconds", type=float, default=0.5, help="length of one timing measurement")
    b.add_argument("--no-memory", action="store_true", help="skip the peak-memory child processes")
    b.add_argument("--train-memory", action="store_true", help="also measure sru0/dru4 training memory at batch 8")
    b.add_argument("--omp-wait", choices=("PASSIVE", "ACTIVE", "default"), default="PASSIVE",
                   help="OMP_WAIT_POLICY of the measuring processes (default PASSIVE: busy-waiting torch threads "
                        "collapse on a shared machine)")
    b.set_defaults(func=run_bench_speed)

    e = sub.add_parser("export-model", help="export a checkpoint to ONNX and check it against torch")
    e.add_argument("--checkpoint", required=True, help="a kbh checkpoint (e.g. RUN/best.pt)")
    e.add_argument("--onnx", required=True, help="output .onnx file")
    e.add_argument("--mode", choices=("all", "step"), default="all",
                   help="all: every iteration in one graph; step: one iteration with the state as input/output")
    e.add_argument("--iterations", type=int, help="iterations in --mode all (default: the model's)")
    e.add_argument("--size", type=_size, default=(230, 306), help="HEIGHTxWIDTH of the exported input")
    e.add_argument("--threads", type=int, default=2, help="ONNX Runtime threads for the parity check")
    e.set_defaults(func=run_export_model)


def run_models(args) -> int:
    import json

    from training.models import MODEL_NAMES, build_model, count_parameters

    rows = []
    for name in MODEL_NAMES:
        model = build_model(name)
        rows.append({"name": name, "parameters": count_parameters(model), "recurrent": model.recurrent,
                     "seedable": model.seedable, "default_iterations": model.default_iterations,
                     "class": type(model).__name__})
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    print(f"{'model':<11} {'parameters':>11}  {'T':>2}  {'s0':<3} class")
    for r in rows:
        print(f"{r['name']:<11} {r['parameters']:>11,}  {r['default_iterations']:>2}  "
              f"{'yes' if r['seedable'] else 'no':<3} {r['class']}")
    print("T: default iterations; s0: can be seeded with a previous frame's mask")
    return 0


def run_bench_speed(args) -> int:
    from training.bench_speed import run_bench_speed as run

    return run(args)


def run_export_model(args) -> int:
    from training.onnx_export import run_export

    return run_export(args)
