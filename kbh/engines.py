"""Interactive segmentation engines: one interface, several implementations. No Qt, no torch.

An engine segments one frame from the person's strokes. It is built per frame by a factory,

    factory = engine_factory("grabcut")                   # or ("model", checkpoint="runs/x/best.pt")
    engine = factory(image, prior)                        # image RGB uint8 (H, W, 3); prior None or (H, W) in [0, 1]
    mask = engine.update(strokes)                         # the whole stroke list each time -> uint8 {0,1} (H, W)

and every engine keeps the same promises:
- `update` is a function of the stroke list: the same strokes give the same mask whatever edits led there
  (add, erase, undo, redo), so undo and a reopened frame show what the person saw;
- strokes are hard labels: every stroked pixel has its stroke's label in the output (the last stroke wins);
- `engine.label` names the engine for a person (the annotator's status bar shows it).

"grabcut" (kbh.grabcut) is always available and needs no training: it is the default and the cold-start engine.
Parts above the core add engines through the entry-point group `kbh.engines` (name -> a callable
`make_factory(checkpoint=None, **options) -> factory`); `training` registers "model", the stroke-conditioned
recurrent network, which needs a checkpoint trained with `kbh train --interactive`. The core never imports them
by name, so the dependency points one way.
"""

from __future__ import annotations

from importlib.metadata import entry_points
from pathlib import Path
from typing import Callable, Protocol

import numpy as np

from .errors import KbhError
from .strokes import Stroke

ENTRY_POINT_GROUP = "kbh.engines"
DEFAULT_ENGINE = "grabcut"


class Engine(Protocol):
    label: str

    def update(self, strokes: list[Stroke]) -> np.ndarray: ...


EngineFactory = Callable[[np.ndarray, "np.ndarray | None"], Engine]


def _grabcut_factory(checkpoint: str | Path | None = None, **options) -> EngineFactory:
    if checkpoint is not None:
        raise KbhError("the grabcut engine takes no checkpoint (did you mean --engine model?)")

    def factory(image: np.ndarray, prior: np.ndarray | None = None, **kw) -> Engine:
        from .grabcut import GrabCutSession

        return GrabCutSession(image, prior=prior, **{**options, **kw})

    factory.engine_name = "grabcut"  # type: ignore[attr-defined]
    return factory


def _registered() -> dict[str, object]:
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def available_engines() -> list[str]:
    """Engine names: "grabcut" first, then those registered by installed parts."""
    return [DEFAULT_ENGINE, *sorted(n for n in _registered() if n != DEFAULT_ENGINE)]


def engine_factory(name: str = DEFAULT_ENGINE, checkpoint: str | Path | None = None, **options) -> EngineFactory:
    """The factory of engine `name`; KbhError (one line) for an unknown engine or a missing/bad checkpoint."""
    if name == DEFAULT_ENGINE:
        return _grabcut_factory(checkpoint, **options)
    ep = _registered().get(name)
    if ep is None:
        raise KbhError(f"unknown engine {name!r}; available: {', '.join(available_engines())}")
    try:
        make = ep.load()
    except ImportError as e:  # the part that registered it is installed but broken or missing a dependency
        raise KbhError(f"engine {name!r} cannot be loaded: {e}") from None
    factory = make(checkpoint=checkpoint, **options)
    try:
        factory.engine_name = name
    except AttributeError:
        pass
    return factory
