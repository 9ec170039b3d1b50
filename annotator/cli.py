"""`kbh annotate WS`: the desktop annotation app. Qt is imported only when the command runs."""

from __future__ import annotations

import getpass


def register(sub, bench_sub) -> None:
    p = sub.add_parser("annotate", help="open the annotation app on a workspace (GrabCut or a trained model)",
                       description="Annotate the frames of a workspace with scribbles; the mask comes from GrabCut "
                                   "(built in, the default) or from a stroke-conditioned model (--engine model "
                                   "--checkpoint C, trained with `kbh train --interactive`). The Engine menu "
                                   "switches while the app runs. Press F1 in the app for the keyboard shortcuts.")
    p.add_argument("workspace", metavar="WS", help="workspace folder (made by `kbh init` / `kbh import`)")
    p.add_argument("--annotator", default=None, help="name recorded with each annotation (default: login name)")
    p.add_argument("--frame", default=None, metavar="KEY", help="open this frame first, e.g. 01_seq/00003")
    p.add_argument("--engine", default="grabcut", metavar="NAME",
                   help="interactive engine: grabcut (default, needs no training) or model (needs --checkpoint)")
    p.add_argument("--checkpoint", default=None, metavar="C",
                   help="checkpoint of the model engine (trained with `kbh train --interactive`)")
    p.set_defaults(func=_annotate)


def _annotate(args) -> int:
    from .app import run

    annotator = args.annotator
    if annotator is None:
        try:
            annotator = getpass.getuser()
        except Exception:  # no login name in some containers
            annotator = None
    return run(args.workspace, annotator=annotator, frame_key=args.frame, engine=args.engine,
               checkpoint=args.checkpoint)
