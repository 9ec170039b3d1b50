"""The top floor: benchmarks that print figures (recorded in benchmarks/RESULTS.md) and the demo of the whole
loop. They may import every part (kbh, training, annotator); nothing imports them. `kbh bench ...` reaches the
ones below through the `kbh.commands` entry point (benchmarks/cli.py); each is also `python -m benchmarks.NAME`."""
