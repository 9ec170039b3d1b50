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
