"""Model registry: every model is chosen by name.

    from training.models import build_model, MODEL_NAMES, count_parameters
    model = build_model("dru4", hidden=32)       # keyword arguments override the defaults
    outs = model(x, iterations=3, s0=None)         # list of (B,2,H,W) logits, one per iteration
    build_model(**model.config)                    # rebuilds the same architecture

Names: unet-b, unet-g (single pass), rec-simple, rec-last, rec-middle, canvas, sru0..sru4, dru0..dru4.
Models expose `recurrent`, `seedable` (accepts s0), `default_iterations`, `config`, and the step interface
(initial_state / prepare / iterate / step) in training/models/base.py.
"""

from __future__ import annotations

import inspect

from torch import nn

from .base import SegmentationModel
from .blocks import fold_batchnorm
from .canvas import CanvasSegmenter
from .gated import GatedRecurrentUNet
from .recurrent import RecLast, RecMiddle, RecSimple
from .unet import UNetSegmenter

# name -> (class, arguments fixed by the name; these are not part of config and cannot be overridden)
_REGISTRY: dict[str, tuple[type[SegmentationModel], dict]] = {
    "unet-b": (UNetSegmenter, {"norm": "batch"}),
    "unet-g": (UNetSegmenter, {"norm": "group"}),
    "rec-simple": (RecSimple, {}),
    "rec-last": (RecLast, {}),
    "rec-middle": (RecMiddle, {}),
    "canvas": (CanvasSegmenter, {}),
    **{f"sru{lvl}": (GatedRecurrentUNet, {"level": lvl, "dual": False}) for lvl in range(5)},
    **{f"dru{lvl}": (GatedRecurrentUNet, {"level": lvl, "dual": True}) for lvl in range(5)},
}
MODEL_NAMES: tuple[str, ...] = tuple(_REGISTRY)


def build_model(name: str, **kwargs) -> SegmentationModel:
    """Build a model by registry name; kwargs override its constructor defaults.

    Raises ValueError for an unknown name, an unknown argument or one the name fixes (e.g. level for dru4)."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown model {name!r}; known: {', '.join(MODEL_NAMES)}")
    cls, fixed = _REGISTRY[name]
    params = inspect.signature(cls.__init__).parameters
    for key, value in kwargs.items():
        if key in fixed:
            if value != fixed[key]:
                raise ValueError(f"model {name}: {key} is fixed to {fixed[key]!r} by the name")
        elif key not in params or key == "self":
            allowed = sorted(k for k in params if k != "self" and k not in fixed)
            raise ValueError(f"model {name}: unknown argument {key!r}; allowed: {', '.join(allowed)}")
    # The full resolved argument list goes into config, so a checkpoint rebuilds the same model even if a
    # default changes later.
    resolved = {k: p.default for k, p in params.items() if k != "self" and k not in fixed}
    resolved.update({k: v for k, v in kwargs.items() if k not in fixed})
    model = cls(**fixed, **resolved)
    model.config = {"name": name, **resolved}
    return model


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


__all__ = ["MODEL_NAMES", "SegmentationModel", "build_model", "count_parameters", "fold_batchnorm"]
