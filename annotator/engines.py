"""Which interactive engine the annotator runs, Qt-free.

The annotator never imports `training`: it reaches every engine, the trained "model" one included, through
`kbh.engines.engine_factory(name, checkpoint=...)`, looked up when an engine is chosen (so tests can replace it).
An `EngineChoice` is what the window and the worker need: the per-frame factory and a label for the status bar.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from kbh.errors import KbhError

DEFAULT_ENGINE = "grabcut"


@dataclass(frozen=True)
class EngineChoice:
    name: str  # "grabcut", "model", ...
    factory: Callable  # factory(image, prior) -> engine with .update(strokes) -> mask
    checkpoint: str | None = None
    label: str = ""  # for a person: "GrabCut", "Model sru0 (step 800)"; the engines' own label once one is built

    @property
    def is_default(self) -> bool:
        return self.name == DEFAULT_ENGINE


def default_engine_factory(image, prior=None, **kw):
    """The built-in GrabCut (kbh.engines' own factory; the engine loads lazily: the GUI opens first)."""
    from kbh.engines import engine_factory

    return engine_factory(DEFAULT_ENGINE)(image, prior, **kw)


def fallback_label(name: str, checkpoint: str | Path | None = None) -> str:
    """A label for an engine before any of its engines has told its own (`engine.label`)."""
    if name == DEFAULT_ENGINE:
        return "GrabCut"
    base = name[:1].upper() + name[1:]
    return f"{base} {Path(checkpoint).name}" if checkpoint else base


def choice_from_factory(factory: Callable | None, name: str = DEFAULT_ENGINE,
                        checkpoint: str | Path | None = None) -> EngineChoice:
    """Wrap a ready factory (an injected one, or None for the built-in GrabCut)."""
    if factory is None:
        factory = default_engine_factory
    label = getattr(factory, "label", None)
    if not isinstance(label, str) or not label:
        label = fallback_label(name, checkpoint)
    return EngineChoice(name, factory, None if checkpoint is None else str(checkpoint), label)


def build_engine(name: str = DEFAULT_ENGINE, checkpoint: str | Path | None = None) -> EngineChoice:
    """The engine `name` with its checkpoint; KbhError (one line) for an unknown engine, a missing checkpoint, or
    a checkpoint the engine cannot use. Nothing is shown or opened: callers decide what to do with the error."""
    name = (name or DEFAULT_ENGINE).strip().lower()
    # A missing or unusable checkpoint is the engine's own one-line error (kbh.engines, training.checkpoint).
    from kbh import engines  # looked up now, not at import: the registry may change (and tests replace it)

    try:
        factory = engines.engine_factory(name, checkpoint=checkpoint)
    except ImportError as e:  # registered, but the part that provides it is missing or broken
        raise KbhError(f"the {name} engine cannot be loaded: {e}") from e
    return choice_from_factory(factory, name, checkpoint)


def one_line(error: BaseException) -> str:
    """An error as a person reads it in a status bar: KbhError's own text, otherwise prefixed with its type."""
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    if isinstance(error, KbhError):
        return text or "error"
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
