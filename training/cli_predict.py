"""`kbh predict`: model pre-annotations (and propagation through video) into a workspace."""

from __future__ import annotations

from pathlib import Path


def register(sub, bench_sub) -> None:
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


def _predict(args) -> int:
    from .predict import run_predict

    return run_predict(args)
