"""Sub-commands for the workspace: init, import, synth, simulate-annotate, stats, queue, export."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from .errors import KbhError


def register(sub, bench_sub) -> None:
    p = sub.add_parser("init", help="create an empty workspace")
    p.add_argument("workspace", type=Path)
    p.set_defaults(func=cmd_init)

    p = sub.add_parser("import", help="import frames (image folder, CSV list, video, KBH or DRIVE layout)",
                       description="SOURCE is a folder of images, a .csv list, a video file, or (with --layout kbh "
                                   "or drive) a folder in the KBH archive layout or the DRIVE retinal-vessel "
                                   "layout (training/ and test/, each image its own person).")
    p.add_argument("workspace", type=Path)
    p.add_argument("source", type=Path)
    p.add_argument("--masks", type=Path, help="folder of masks matched to images by file stem")
    p.add_argument("--mask-key", metavar="REGEX",
                   help="pair images and masks whose names differ: group 1 of REGEX in both names, e.g. '^(\\d+)_' "
                        "pairs DRIVE's 21_training.tif with 21_manual1.gif")
    p.add_argument("--layout", choices=["folder", "kbh", "drive"], default="folder")
    p.add_argument("--person", help="person id for every frame")
    p.add_argument("--sequence", help="sequence id for every frame")
    p.add_argument("--person-regex", help=r"regex over the relative path (no extension); group 1 is the id, "
                                          r"e.g. 'hgr1_id(\d+)'")
    p.add_argument("--sequence-regex", help="regex for the sequence id")
    p.add_argument("--index-regex", help="regex for the frame index (digits)")
    p.add_argument("--person-attr", action="append", metavar="KEY=VALUE", help="person attribute (repeatable)")
    p.add_argument("--sequence-attr", action="append", metavar="KEY=VALUE", help="sequence attribute (repeatable)")
    p.add_argument("--mask-invert", action="store_true",
                   help="flip the masks after the rules below (for sets that mark the hand with 0)")
    p.add_argument("--mask-threshold", type=float,
                   help="grey masks: hand = value > threshold (needed for masks with more than two values)")
    p.add_argument("--mask-hand-colour", metavar="R,G,B",
                   help="colour masks: the hand's colour (needed unless the mask is black and one colour)")
    p.add_argument("--max-pixels", type=float, default=50e6,
                   help="refuse images and masks larger than this, read from the header (default 50e6)")
    p.add_argument("--every", type=int, default=1, help="video: keep every N-th frame")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_import)

    p = sub.add_parser("synth", help="synthesize keyboard-hand frames with exact masks")
    p.add_argument("workspace", type=Path)
    p.add_argument("--persons", type=int, default=10)
    p.add_argument("--sequences-per-person", type=int, default=2)
    p.add_argument("--frames", type=int, default=10, help="frames per sequence")
    p.add_argument("--size", default="230x306", help="HEIGHTxWIDTH")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--unlabeled", action="store_true",
                   help="leave frames unlabeled (ground truth kept in WS/ground_truth/ for simulations)")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_synth)

    p = sub.add_parser("simulate-annotate", help="a simulated person annotates frames with GrabCut strokes",
                       description="Strokes go where the interactive-segmentation protocol puts them (largest "
                                   "error region) until the target IoU against the ground truth; masks, strokes "
                                   "and time are saved as a person's work (annotator 'simulated').")
    p.add_argument("workspace", type=Path)
    p.add_argument("--persons", type=int, help="annotate the unlabeled/prelabeled frames of the first N persons")
    p.add_argument("--person", action="append", help="annotate this person's frames (repeatable)")
    p.add_argument("--limit", type=int, default=0, help="at most this many frames (0: all chosen)")
    p.add_argument("--target", type=float, default=0.90, help="stop a frame at this IoU")
    p.add_argument("--max-strokes", type=int, default=20)
    p.add_argument("--radius", type=float, default=5.0, help="brush radius in pixels")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_simulate_annotate)

    p = sub.add_parser("stats", help="statistics of a workspace or a folder of shards")
    p.add_argument("path", type=Path)
    p.add_argument("--json", type=Path, help="also write the figures as JSON")
    p.add_argument("--no-coverage", action="store_true", help="skip reading every mask")
    p.set_defaults(func=cmd_stats)

    p = sub.add_parser("queue", help="frames to annotate next, the model's least certain first")
    p.add_argument("workspace", type=Path)
    p.add_argument("--model", help="rank by this model's predictions (default: each frame's newest)")
    p.add_argument("--limit", type=int, default=20, help="how many to list (0: all)")
    p.set_defaults(func=cmd_queue)

    p = sub.add_parser("export", help="export finished masks as PNG files or COCO JSON (RLE)")
    p.add_argument("workspace", type=Path)
    p.add_argument("--format", choices=["png", "coco"], required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--status", default="done,reviewed", help="comma-separated statuses to export")
    p.add_argument("--images", action="store_true", help="png: copy the images beside the masks")
    p.set_defaults(func=cmd_export)


def cmd_init(args) -> int:
    from .workspace import Workspace

    Workspace.init(args.workspace).close()
    print(f"created workspace {args.workspace}")
    return 0


def cmd_import(args) -> int:
    from . import ingest, mask_rules
    from .workspace import Workspace

    pattrs, sattrs = ingest.parse_attrs(args.person_attr), ingest.parse_attrs(args.sequence_attr)
    colour = mask_rules.parse_colour(args.mask_hand_colour) if args.mask_hand_colour else None
    rule = mask_rules.MaskRule(args.mask_invert, args.mask_threshold, colour)
    if args.max_pixels < 1:
        raise KbhError(f"--max-pixels {args.max_pixels:g}: must be at least 1")
    max_pixels = int(args.max_pixels)
    src: Path = args.source
    with Workspace.open(args.workspace) as ws:  # first: a wrong workspace path is the likelier mistake
        if not src.exists():
            raise KbhError(f"{src}: no such file or folder")
        if args.layout == "kbh":
            items = ingest.items_from_kbh_layout(src)
        elif args.layout == "drive":
            items = ingest.items_from_drive_layout(src)
        elif src.is_dir():
            items = ingest.items_from_folder(src, args.masks, args.person, args.sequence, args.person_regex,
                                             args.sequence_regex, args.index_regex, pattrs, sattrs,
                                             mask_key=args.mask_key)
        elif src.suffix.lower() == ".csv":
            items = ingest.items_from_csv(src)
        elif src.suffix.lower() in ingest.VIDEO_EXTENSIONS:
            items = ingest.items_from_video(src, args.every, args.person, args.sequence, pattrs, sattrs,
                                            max_pixels)
        elif src.suffix.lower() in ingest.IMAGE_EXTENSIONS:
            raise KbhError(f"{src}: give the folder that holds the images, not one image")
        else:
            raise KbhError(f"{src}: unknown source type (a folder, a .csv list or a video file)")
        report = ingest.import_items(ws, items, rule, progress=not args.quiet, max_pixels=max_pixels)
    print(report.summary())
    for warning in ingest.mask_warnings(report):
        print(warning, file=sys.stderr)
    return 0


def cmd_synth(args) -> int:
    from .shards import parse_size
    from .synth import check_request, synthesize_workspace
    from .workspace import DB_NAME, Workspace

    size = parse_size(args.size)
    check_request(args.persons, args.sequences_per_person, args.frames, size)  # before a workspace is made
    ws = Workspace.open(args.workspace) if (args.workspace / DB_NAME).exists() else Workspace.init(args.workspace)
    with ws:
        summary = synthesize_workspace(ws, args.persons, args.sequences_per_person, args.frames, size=size,
                                       seed=args.seed, labeled=not args.unlabeled, progress=not args.quiet)
    print(f"synthesized {summary['frames']} frames of {summary['persons']} persons, "
          f"{summary['sequences']} sequences into {args.workspace} ({summary['seconds']:.1f} s)")
    return 0


def cmd_simulate_annotate(args) -> int:
    from .simulate_annotate import annotate_frames
    from .workspace import Workspace

    with Workspace.open(args.workspace) as ws:
        persons = list(ws.persons())
        if args.person:
            unknown = [p for p in args.person if p not in persons]
            if unknown:
                raise KbhError(f"{args.workspace}: no person {unknown[0]!r}")
            chosen = set(args.person)
        elif args.persons is not None:
            if not 1 <= args.persons <= len(persons):
                raise KbhError(f"--persons {args.persons}: the workspace has {len(persons)} persons")
            chosen = set(persons[: args.persons])
        else:
            chosen = set(persons)
        frames = [f for f in ws.frames(status=["unlabeled", "prelabeled"]) if f.person_id in chosen]
        if args.limit:
            frames = frames[: args.limit]
        if not frames:
            raise KbhError(f"{args.workspace}: no unlabeled or prelabeled frames to annotate")
        s = annotate_frames(ws, frames, args.target, args.max_strokes, args.radius, progress=not args.quiet)
    if not s.frames:
        raise KbhError(f"{args.workspace}: none of the chosen frames has a ground truth to simulate against")
    print(f"annotated {s.frames} frames: {np.mean(s.strokes):.2f} strokes per frame, mean IoU "
          f"{np.mean(s.ious):.3f}, engine time {s.seconds:.1f} s; sources "
          + ", ".join(f"{k} {v}" for k, v in sorted(s.by_source.items())))
    return 0


def cmd_stats(args) -> int:
    from .atomic_file import atomic_path
    from .stats import format_stats, stats

    s = stats(args.path, coverage=not args.no_coverage)
    print(format_stats(s))
    if args.json:
        with atomic_path(args.json) as tmp:
            tmp.write_text(json.dumps(s, indent=2))
    return 0


def cmd_queue(args) -> int:
    from .queue import annotation_queue
    from .workspace import Workspace

    with Workspace.open(args.workspace, readonly=True) as ws:
        queue = annotation_queue(ws, args.model)
    shown = queue if args.limit <= 0 else queue[: args.limit]
    print(f"{len(queue)} frames to annotate" + (f"; the first {len(shown)}:" if len(shown) < len(queue) else ":"))
    for e in shown:
        unc = "-" if e.uncertainty is None else f"{e.uncertainty:.4f}"
        print(f"  {e.frame_id:6d}  {e.key:32s}  {e.status:10s}  uncertainty {unc}" + (f"  ({e.model})" if e.model else ""))
    return 0


def cmd_export(args) -> int:
    from .mask_export import export
    from .workspace import STATUSES, Workspace

    statuses = [s.strip() for s in args.status.split(",") if s.strip()]
    bad = [s for s in statuses if s not in STATUSES]
    if bad:
        raise KbhError(f"--status: unknown status {bad[0]!r} (one of {', '.join(STATUSES)})")
    with Workspace.open(args.workspace, readonly=True) as ws:
        n = export(ws, args.out, args.format, statuses, images=args.images)
    print(f"exported {n} masks to {args.out} ({args.format})")
    return 0
