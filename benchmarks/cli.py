"""`kbh bench annotate|speed|split|propagation|integrity` and `kbh demo`: the benchmarks and the demo, as
sub-commands registered through the `kbh.commands` entry point (the core's `kbh` command names no layer above it).
`annotate` and `speed` declare their options here; the others forward their arguments to the module's
`main(argv)`."""

from __future__ import annotations

import importlib

BENCHES = {
    "split": ("benchmarks.bench_split", "split quality vs GroupShuffleSplit, shard throughput (--scale: memory)"),
    "propagation": ("benchmarks.bench_propagation", "seeded with the previous frame vs unseeded, on a shard split"),
    "integrity": ("benchmarks.bench_integrity", "the at-open check and verify on a KBH-sized split"),
    "iterations": ("benchmarks.iteration_study", "recipe variants of one recurrent model: val mIoU per iteration"),
    "drive": ("benchmarks.bench_drive", "the paper's Table 4: the zoo on DRIVE retinal vessels, per iteration"),
    "hgr1-models": ("benchmarks.hgr1_models", "train and test the zoo on real HGR1 hands, split by person"),
    "grabcut": ("benchmarks.bench_grabcut", "the GrabCut engine: NoC and ms per stroke, tuned vs held-out persons"),
    "annotate-hgr1": ("benchmarks.bench_annotate_hgr1", "`kbh bench annotate` on HGR1, both protocols and sizes"),
    "annotator": ("benchmarks.bench_annotator", "mouse-up to repainted mask in the real annotator window"),
    "interactive": ("benchmarks.bench_interactive", "the stroke-conditioned model engine on HGR1"),
    "synth": ("benchmarks.bench_synth", "synthetic frame generation throughput"),
}


def register(sub, bench_sub) -> None:
    from . import bench_annotate, bench_speed

    bench_annotate.register(bench_sub)
    bench_speed.register(bench_sub)
    # Their options belong to the module: kbh forwards everything after the command (`forward_args`).
    for name, (module, text) in BENCHES.items():
        b = bench_sub.add_parser(name, help=text, add_help=False)
        b.set_defaults(func=lambda a, m=module: _run(m, a.forwarded), forward_args=True)
    d = sub.add_parser("demo", help="the whole loop on synthetic data (what `make demo` runs)", add_help=False)
    d.set_defaults(func=lambda a: _run("benchmarks.demo", a.forwarded), forward_args=True)


def _run(module: str, argv: list[str]) -> int:
    return int(importlib.import_module(module).main(argv) or 0)
