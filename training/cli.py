"""The training part's sub-commands: `kbh train`, `kbh eval`, `kbh predict`, `kbh models`, `kbh export-model`
(registered through the `kbh.commands` entry point; torch is imported only inside the handlers)."""

from __future__ import annotations

import argparse
from pathlib import Path


def size_arg(text: str) -> tuple[int, int]:
    """kbh.shards.parse_size as an argparse type (the models need at least 16 pixels a side)."""
    from kbh.errors import KbhError
    from kbh.shards import parse_size

    try:
        return parse_size(text, min_side=16)
    except KbhError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _train(args) -> int:
    from .loss import DEFAULT_ALPHA
    from .train import train

    if args.alpha is None and not args.resume:  # on --resume the run's own alpha is kept
        args.alpha = DEFAULT_ALPHA
    return train(args)


def _eval(args) -> int:
    from .evaluate import run_eval

    return run_eval(args)


def _predict(args) -> int:
    from .predict import run_predict

    return run_predict(args)


def _compare(args) -> int:
    from .compare import run_compare

    return run_compare(args)


def _export_model(args) -> int:
    from .onnx_export import run_export

    return run_export(args)


def _models(args) -> int:
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


def register(sub, bench_sub) -> None:
    p = sub.add_parser("train", help="train a segmentation model on HDF5 shards (also under torchrun: DDP)",
                       description="Train on the shards of `kbh split`. Under `torchrun --nproc_per_node=K` the "
                                   "same command trains with DistributedDataParallel (see docs/training.md).")
    p.add_argument("--model", default="sru0", help="model name (see `kbh models`); on --resume the checkpoint's")
    p.add_argument("--data", required=True, help="shard folder written by `kbh split`")
    p.add_argument("--out", required=True, help="run folder: last.pt, best.pt, log.jsonl, curves.png")
    budget = p.add_mutually_exclusive_group()
    budget.add_argument("--steps", type=int, help="optimizer steps (a larger value on --resume extends the run)")
    budget.add_argument("--epochs", type=int, help="passes over the training split")
    p.add_argument("--batch", type=int, default=8, help="batch size per process")
    p.add_argument("--lr", type=float, default=0.01, help="initial learning rate (polynomial decay to 0)")
    p.add_argument("--weight-decay", type=float, default=5e-4)
    p.add_argument("--iterations", type=int, default=3, help="recurrent iterations N during training")
    p.add_argument("--alpha", type=float, default=None,
                   help="loss weight alpha^(N-t) of iteration t (default 1: all equal; the paper's is 0.4)")
    p.add_argument("--random-iterations", action="store_true",
                   help="draw N from 1..--iterations at every step (the loss weights follow N), so every t is trained")
    p.add_argument("--stop-mask-gradient", action="store_true",
                   help="feed the mask s_{t-1} back as a constant: no gradient through the recurrence's mask")
    p.add_argument("--model-arg", action="append", metavar="KEY=VALUE",
                   help="a constructor argument of the model, e.g. init=zeros (repeatable; see docs/training.md)")
    p.add_argument("--crop", type=size_arg, metavar="HxW",
                   help="train on random crops of this size (large frames, e.g. DRIVE); validation sees whole frames")
    p.add_argument("--paste", type=float, default=0.0, metavar="P",
                   help="with probability P paste a sample's hand on another training frame's background, its "
                        "own hand inpainted away, with the skin tone scaled (few persons, more backgrounds)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=2, help="DataLoader worker processes per training process")
    p.add_argument("--eval-every", type=int, default=0, help="validate every K steps (always at the end)")
    p.add_argument("--save-every", type=int, default=50, help="write last.pt every K steps (and at each eval)")
    p.add_argument("--log-every", type=int, default=10, help="append the training loss to log.jsonl every K steps")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last.pt")
    p.add_argument("--device", choices=("cpu", "cuda"), help="default: cuda when available")
    i = p.add_argument_group("interactive (RITM-style stroke-conditioned model, the annotator's --engine model)")
    i.add_argument("--interactive", action="store_true",
                   help="train on image + current mask + simulated strokes (3 + 3 input channels)")
    i.add_argument("--encoding", choices=("disk", "distance"), default="distance",
                   help="stroke encoding: footprint, or clipped distance to the strokes (default, measured better)")
    i.add_argument("--stroke-radius", type=float, default=3.0,
                   help="brush radius of simulated strokes in shard pixels (drawn per sample from r/2..1.5r)")
    i.add_argument("--stroke-distance", type=float, default=20.0, help="D of the distance encoding, shard pixels")
    i.add_argument("--rounds", type=int, default=3, help="at most this many correction rounds per batch (0..R)")
    i.add_argument("--colour-shuffle", type=float, default=0.5,
                   help="probability of permuting a sample's RGB channels (so strokes, not skin colour, decide)")
    i.add_argument("--colour-invert", type=float, default=0.0,
                   help="probability of inverting some of a sample's RGB channels (so brightness does not decide)")
    i.add_argument("--val-strokes", type=int, default=10, help="strokes per validation frame (centre protocol)")
    p.set_defaults(func=_train)

    e = sub.add_parser("eval", help="score a checkpoint per iteration on a split (mIoU, recall, precision, F1, BEP)")
    e.add_argument("--checkpoint", required=True)
    e.add_argument("--data", required=True, help="shard folder written by `kbh split`")
    e.add_argument("--split", default="test")
    e.add_argument("--iterations", type=int, help="evaluate t = 1..T (may exceed the trained count)")
    e.add_argument("--flip", action="store_true", help="average with the horizontally mirrored prediction")
    e.add_argument("--json", help="write the report here")
    e.add_argument("--samples", help="PNG of sample frames refined over iterations")
    e.add_argument("--sample-count", type=int, default=4)
    e.add_argument("--batch", type=int, default=4)
    e.add_argument("--workers", type=int, default=0)
    e.add_argument("--device", choices=("cpu", "cuda"))
    e.set_defaults(func=_eval)

    c = sub.add_parser("compare", help="train 2-3 candidate models on the same shards; say which to use for "
                                       "pre-annotation",
                       description="Trains each candidate with the same recipe, scores it on the val split at t = "
                                   "1..T, times it on this machine, and names the one to use: the best val mIoU, or "
                                   "a faster one within --tolerance of it. Test frames are never looked at.")
    c.add_argument("--data", required=True, help="shard folder written by `kbh split` (needs a val split)")
    c.add_argument("--out", required=True, help="folder: one run per model, compare.json")
    c.add_argument("--models", default="unet-g,sru0,dru4", help="comma-separated candidates (default unet-g,sru0,dru4)")
    c.add_argument("--steps", type=int, default=300, help="training steps per candidate (the same for all)")
    c.add_argument("--batch", type=int, default=8)
    c.add_argument("--lr", type=float, default=0.01)
    c.add_argument("--crop", type=size_arg, metavar="HxW", help="train on random crops (large frames)")
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--workers", type=int, default=0)
    c.add_argument("--iterations", type=int, default=5, help="score t = 1..T on val (default 5)")
    c.add_argument("--tolerance", type=float, default=0.005,
                   help="prefer a faster candidate within this much val mIoU of the best (default 0.005)")
    c.set_defaults(func=_compare)

    p = sub.add_parser("predict", help="store a model's predictions in a workspace as pre-annotations",
                       description="Frames become `prelabeled` with a probability map and an uncertainty score; "
                                   "frames a person has worked on are never touched.")
    p.add_argument("workspace", type=Path)
    p.add_argument("--checkpoint", required=True, type=Path)
    p.add_argument("--frames", choices=("unlabeled", "prelabeled", "unworked"), default="unworked",
                   help="which frames: unlabeled, prelabeled (refresh), or both (default)")
    p.add_argument("--iterations", type=int, help="recurrent iterations (default: the model's)")
    p.add_argument("--propagate", action="store_true",
                   help="seed frame k+1 of a sequence with frame k's mask (finished mask or this run's prediction)")
    p.add_argument("--propagate-iterations", type=int, default=1, help="iterations of a seeded frame")
    p.add_argument("--size", help="HEIGHTxWIDTH the network sees (default: the checkpoint's, else 230x306)")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_predict)

    p = sub.add_parser("models", help="list every model with its parameter count")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=_models)

    x = sub.add_parser("export-model", help="export a checkpoint to ONNX and check it against torch")
    x.add_argument("--checkpoint", required=True, help="a kbh checkpoint (e.g. RUN/best.pt)")
    x.add_argument("--onnx", required=True, help="output .onnx file")
    x.add_argument("--mode", choices=("all", "step"), default="all",
                   help="all: every iteration in one graph; step: one iteration with the state as input/output")
    x.add_argument("--iterations", type=int, help="iterations in --mode all (default: the model's)")
    x.add_argument("--size", type=size_arg, default=(230, 306), help="HEIGHTxWIDTH of the exported input")
    x.add_argument("--threads", type=int, default=2, help="ONNX Runtime threads for the parity check")
    x.set_defaults(func=_export_model)
