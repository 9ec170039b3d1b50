"""`make demo`: the whole model-assisted labelling loop on synthetic data, from nothing, with progress.

    synthesize (unlabeled, ground truth kept aside) -> a simulated person annotates the first persons with
    GrabCut strokes -> split those by person 20/20/60 -> verify -> train sru0 briefly -> evaluate per iteration
    (past the trained count: the anytime curve) -> predict into the remaining persons' frames -> annotation
    benchmark (strokes from scratch vs from the model's pre-annotation vs from the previous frame's mask) ->
    propagation benchmark -> train an interactive (stroke-conditioned) model briefly -> strokes per frame with
    each engine (GrabCut from strokes, the model engine from strokes, GrabCut from the pre-annotation) -> a
    short report with the paths of the plots.

Each step calls the `kbh` sub-command a person would type, so the demo is also a smoke test of the CLI. The
demo works at 96x128 so that training on two CPU cores fits in a few minutes; the product's default is 230x306.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

from benchmarks import bench_propagation
from kbh.cli import main as kbh



def step(title: str, argv: list[str]) -> None:
    print(f"\n== {title}\n$ kbh {' '.join(argv)}", flush=True)
    t0 = time.perf_counter()
    rc = kbh(argv)
    if rc != 0:
        sys.exit(f"demo: step '{title}' failed with exit code {rc}")
    print(f"   ({time.perf_counter() - t0:.1f} s)", flush=True)


def run(out: Path, persons: int, labeled_persons: int, frames: int, size: str, steps: int) -> None:
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    ws, shards, run_dir = out / "workspace", out / "shards", out / "run"
    t0 = time.perf_counter()
    step("synthesize a workspace (unlabeled; ground truth kept aside for the simulated annotator)",
         ["synth", str(ws), "--persons", str(persons), "--sequences-per-person", "2", "--frames", str(frames),
          "--size", size, "--seed", "0", "--unlabeled"])
    step(f"a simulated person annotates the first {labeled_persons} persons with GrabCut strokes",
         ["simulate-annotate", str(ws), "--persons", str(labeled_persons)])
    step("split the annotated persons 20/20/60", ["split", str(ws), "--by-person", "20/20/60", "--seed", "0",
                                                  "--out", str(shards), "--size", size, "--name", "demo"])
    step("verify the shards", ["verify", str(shards)])
    step("statistics", ["stats", str(shards)])
    step("train sru0 briefly", ["train", "--model", "sru0", "--data", str(shards), "--out", str(run_dir),
                                "--steps", str(steps), "--batch", "8", "--lr", "0.05",
                                "--eval-every", str(max(1, steps // 3)), "--workers", "1"])
    step("evaluate on the test persons, iterations 1..5 (trained with 3)",
         ["eval", "--checkpoint", str(run_dir / "best.pt"), "--data", str(shards), "--split", "test",
          "--iterations", "5", "--json", str(run_dir / "eval_test.json"), "--samples", str(run_dir / "refinement.png")])
    step("predict into the remaining persons' frames (pre-annotations + uncertainty)",
         ["predict", str(ws), "--checkpoint", str(run_dir / "best.pt")])
    step("annotation queue (least certain first)", ["queue", str(ws), "--limit", "5"])
    unlabeled = [f"p{i:03d}" for i in range(labeled_persons, persons)]
    bench_argv = ["bench", "annotate", str(ws), "--json", str(out / "annotate_bench.json"),
                  "--plot", str(out / "strokes_saved.png")]
    for p in unlabeled:
        bench_argv += ["--person", p]
    step("annotation benchmark: strokes from scratch, from the model, from the previous frame", bench_argv)
    print("\n== propagation: seeded with the previous frame, 1 iteration, vs unseeded, 3 iterations", flush=True)
    if bench_propagation.main(["--checkpoint", str(run_dir / "best.pt"), "--data", str(shards), "--json",
                               str(out / "propagation.json")]):
        raise SystemExit("demo: the propagation benchmark failed")
    step("train an interactive model (image + mask + strokes in; corrections simulated on its own errors)",
         ["train", "--model", "unet-g", "--interactive", "--data", str(shards), "--out", str(out / "interactive"),
          "--steps", str(steps), "--batch", "8", "--lr", "0.05", "--eval-every", str(max(1, steps // 2)),
          "--workers", "1", "--val-strokes", "5"])
    engine_argv = ["bench", "annotate", str(ws), "--starts", "strokes", "--engine", "model", "--checkpoint",
                   str(out / "interactive" / "best.pt"), "--json", str(out / "annotate_model_engine.json")]
    for p in unlabeled:
        engine_argv += ["--person", p]
    step("annotation benchmark with the model engine (strokes alone)", engine_argv)
    bench = json.loads((out / "annotate_bench.json").read_text())["starts"]
    engine = json.loads((out / "annotate_model_engine.json").read_text())["starts"]["strokes"]
    print(f"\n== report ({time.perf_counter() - t0:.0f} s)")
    ev = json.loads((run_dir / "eval_test.json").read_text())["per_iteration"]
    print("  test mIoU per iteration: " + ", ".join(f"t={r['iteration']} {r['miou']:.3f}" for r in ev))
    print("  strokes per frame to 90% IoU (NoC@90), unlabeled persons' frames:")
    rows = [("GrabCut, strokes alone", bench.get("strokes")), ("model engine, strokes alone", engine),
            ("GrabCut from the pre-annotation", bench.get("model")),
            ("GrabCut from the previous frame's mask", bench.get("propagated"))]
    for label, r in rows:
        if r is not None:
            print(f"    {label:<40s} NoC@90 {r['noc90']:.2f}  IoU before any stroke {r['iou@0']:.3f}, "
                  f"after 1 {r['iou@1']:.3f}")
    for label, path in (("training curve", run_dir / "curves.png"),
                        ("mIoU per iteration", run_dir / "miou_per_iteration.png"),
                        ("refinement over iterations", run_dir / "refinement.png"),
                        ("strokes saved by pre-annotation", out / "strokes_saved.png")):
        print(f"  {label}: {path}")
    print(f"  workspace: {ws}  (open it with: kbh annotate {ws})")


def main(argv: list[str] | None = None) -> int:
    # Idle OpenMP threads sleep instead of spinning: on a 2-core machine spinning threads starve the data loader
    # and the next process (measured: dru4 inference fell from 24.8 to 1.0 frames/s under a little load).
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    p = argparse.ArgumentParser(prog="kbh demo", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("demo_out"))
    p.add_argument("--persons", type=int, default=54)
    p.add_argument("--labeled-persons", type=int, default=50, help="persons the simulated annotator labels")
    p.add_argument("--frames", type=int, default=6, help="frames per sequence")
    p.add_argument("--size", default="96x128", help="HEIGHTxWIDTH")
    p.add_argument("--steps", type=int, default=200, help="training steps")
    args = p.parse_args(argv)
    run(args.out, args.persons, args.labeled_persons, args.frames, args.size, args.steps)
    return 0


if __name__ == "__main__":
    sys.exit(main())
