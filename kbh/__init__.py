"""kbh dataset core: workspace, import, GrabCut engine, person-disjoint splits, HDF5 shards, manifests.

Imports neither Qt nor torch; the CLI loads those lazily for the annotator and training commands.
"""

__version__ = "0.1.0"
