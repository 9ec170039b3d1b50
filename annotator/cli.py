"""`kbh annotate WS`: the desktop annotation app. Qt is imported only when the command runs."""

from __future__ import annotations

import getpass


def register(sub, bench_sub) -> None:
    p = sub.add_parser("annotate", help="open the GrabCut annotation app on a workspace",
                       description="Annotate the frames of a workspace with scribbles and GrabCut. "
                                   "Press F1 in the app for the keyboard shortcuts.")
    p.add_argument("workspace", metavar="WS", help="workspace folder (made by `kbh init` / `kbh import`)")
    p.add_argument("--annotator", default=None, help="name recorded with each annotation (default: login name)")
    p.add_argument("--frame", default=None, metavar="KEY", help="open this frame first, e.g. 01_seq/00003")
    p.set_defaults(func=_annotate)


def _annotate(args) -> int:
    from .app import run

    annotator = args.annotator
    if annotator is None:
        try:
            annotator = getpass.getuser()
        except Exception:  # no login name in some containers
            annotator = None
    return run(args.workspace, annotator=annotator, frame_key=args.frame)
