"""The model-assisted loop on real frames: strokes needed on the HGR1 test persons, from scratch vs from a
model's pre-annotation vs from the previous take's mask.

The test persons' frames are imported into a fresh workspace *without* masks (as a person would get them), their
reference masks are kept aside in `WS/ground_truth/` (the convention `kbh bench annotate` reads), the checkpoint
predicts into the workspace, and `kbh bench annotate` runs the simulated annotator from the three starts.
HGR1 has no video: "propagated" starts from the mask of the previous take of the same gesture by the same person,
a stand-in for the previous video frame.

    kbh bench annotate-hgr1 --checkpoint RUN/best.pt --shards SHARDS --out OUT
    (SHARDS: the `kbh split` output the checkpoint was trained on; its manifest names the test persons)
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

from kbh.cli import main as kbh
from kbh.imageio import write_png
from kbh.mask_rules import HGR1_MASK, read_mask
from kbh.ingest import import_items, items_from_folder
from kbh.workspace import Workspace

HGR1 = ROOT.parent / "shared" / "data" / "hgr1"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="kbh bench annotate-hgr1", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", type=Path, required=True)
    p.add_argument("--shards", type=Path, required=True, help="split folder whose test persons are benchmarked")
    p.add_argument("--hgr1", type=Path, default=HGR1)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--size", help="HEIGHTxWIDTH the network sees (default: the checkpoint's)")
    args = p.parse_args(argv)
    manifest = json.loads((args.shards / "manifest.json").read_text())
    test_persons = {str(x) for x in manifest["splits"]["test"]["persons"]}
    if args.out.exists():
        shutil.rmtree(args.out)
    ws = Workspace.init(args.out / "ws")
    items = items_from_folder(args.hgr1 / "images", person_regex=r"hgr1_(id\d+)", sequence_regex=r"^(.*)_\d+$",
                              index_regex=r"_(\d+)$")
    items = [it for it in items if it.person in test_persons]
    import_items(ws, items, progress=False)
    for f in ws.frames():
        stem = f"{f.sequence_id}_{f.frame_index}"
        gt = read_mask(args.hgr1 / "masks" / f"{stem}.bmp", HGR1_MASK)
        write_png(ws.ground_truth_path(f), gt * 255)
    print(f"{len(items)} frames of test persons {', '.join(sorted(test_persons))} imported without masks")
    ws.close()
    predict = ["predict", str(args.out / "ws"), "--checkpoint", str(args.checkpoint), "--quiet"]
    if args.size:
        predict += ["--size", args.size]
    rc = kbh(predict)
    if rc == 0:
        rc = kbh(["bench", "annotate", str(args.out / "ws"), "--json", str(args.out / "annotate.json"),
                  "--plot", str(args.out / "strokes_saved.png")])
    return rc


if __name__ == "__main__":
    sys.exit(main())
