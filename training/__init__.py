"""Training side of kbh (torch): models, data, loss, metrics, train loop, evaluation, export, benchmarks.

Import torch-heavy modules from here only inside command handlers, so `kbh stats` stays light.
"""
