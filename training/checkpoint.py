"""One-file checkpoints that load with torch.load(weights_only=True) (a checkpoint someone sends cannot run code).

Keys: model_config (build_model(**model_config) rebuilds the network, nanoGPT-style, so --resume cannot build a
different model), model (state dict), optimizer, scheduler, step, epoch, best_miou, manifest_id, normalization
{"mean", "std"}, args (plain types only).
"""

from __future__ import annotations

import hashlib
import pickle
from pathlib import Path

import torch

from kbh.errors import KbhError
from kbh.atomic_file import atomic_path

REQUIRED_KEYS = ("model_config", "model", "step", "normalization")


def plain_args(args) -> dict:
    """argparse namespace -> dict of str/int/float/bool/None/lists (no handler functions, no Paths)."""
    out = {}
    for k, v in vars(args).items():
        if k == "func" or callable(v):
            continue
        if isinstance(v, Path):
            v = str(v)
        if v is None or isinstance(v, (str, int, float, bool)) or (
                isinstance(v, (list, tuple)) and all(isinstance(x, (str, int, float, bool)) for x in v)):
            out[k] = list(v) if isinstance(v, tuple) else v
    return out


def save_checkpoint(path: str | Path, state: dict) -> None:
    """torch.save to a temporary file beside `path`, then rename: a kill leaves the old file or the new one."""
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_checkpoint(path: str | Path, map_location="cpu") -> dict:
    path = Path(path)
    if not path.is_file():
        raise KbhError(f"{path}: no such checkpoint")
    import zipfile

    if not zipfile.is_zipfile(path):  # torch.save writes a zip archive; anything else is corrupt or foreign
        raise KbhError(f"{path}: not a kbh checkpoint (not a torch.save archive: truncated, corrupt or another format)")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError:
        raise KbhError(f"{path}: refused: the checkpoint holds objects other than tensors and plain values "
                       f"(loading it could run code)") from None
    except Exception as e:  # a damaged archive
        raise KbhError(f"{path}: not a loadable kbh checkpoint ({e.__class__.__name__}: {str(e).splitlines()[0][:120]})") from None
    if not isinstance(ckpt, dict) or any(k not in ckpt for k in REQUIRED_KEYS):
        missing = [k for k in REQUIRED_KEYS if not isinstance(ckpt, dict) or k not in ckpt]
        raise KbhError(f"{path}: not a kbh checkpoint (missing {', '.join(missing)})")
    return ckpt


def model_from_checkpoint(ckpt: dict, interactive: bool = False):
    """Rebuild the network from its stored config and load its weights (eval mode).

    A checkpoint of `kbh train --interactive` (key "interactive") needs strokes: only the interactive engine
    (interactive=True) takes it; eval, predict and export refuse it, and the engine refuses the others."""
    from training.models import build_model

    name = ckpt.get("model_config", {}).get("name", "?")
    if ckpt.get("interactive") and not interactive:
        raise KbhError(f"checkpoint of model {name!r} is interactive (trained with --interactive, it needs strokes): "
                       f"use it as the annotator's engine (--engine model), not here")
    if interactive and not ckpt.get("interactive"):
        raise KbhError(f"checkpoint of model {name!r} is not interactive (it takes no strokes): train one with "
                       f"`kbh train --interactive`")
    try:
        config = dict(ckpt["model_config"])
        model = build_model(**config)
        model.load_state_dict(ckpt["model"])
    except (TypeError, ValueError, KeyError, RuntimeError) as e:  # a damaged or foreign checkpoint
        msg = str(e).splitlines()[0][:160] if str(e) else e.__class__.__name__
        raise KbhError(f"checkpoint of model {ckpt['model_config'].get('name', '?')!r} cannot be rebuilt: {msg}") from None
    model.eval()
    return model


def state_dict_digest(model: torch.nn.Module) -> str:
    """sha256 over parameters and buffers in key order: equal digests mean bit-identical weights."""
    h = hashlib.sha256()
    for key, tensor in sorted(model.state_dict().items()):
        h.update(key.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()
