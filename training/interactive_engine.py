"""The "model" engine (kbh.engines): a checkpoint of `kbh train --interactive` segments a frame from strokes.

    factory = make_factory("runs/int_hgr1/best.pt")      # or kbh.engines.engine_factory("model", checkpoint=...)
    engine = factory(image, prior)                        # RGB uint8 (H, W, 3); prior None or (H, W) in [0, 1]
    mask = engine.update(strokes)                         # uint8 {0,1} (H, W)

Per update: the frame (resized once to the checkpoint's input_size) and the strokes (scaled to that size,
encoded as in training) go through the network with the current mask, the hand probability after the strokes
before the last one (zeros, or the prior, before any stroke); seedable models also start their mask state from
it. One recurrent iteration per stroke (`iterations`, default 1) -- RITM's loop, which the model was trained on.
The probability comes back to full resolution along image edges (a fast guided filter, as kbh.grabcut does) and
every stroked pixel gets its stroke's label.

`update` is a function of the stroke list: mask(S) is defined from the probability of S[:-1], which is cached per
prefix, so erasing or undoing a middle stroke recomputes the chain from the longest cached prefix and the same
list always gives the same mask. torch's thread count is left as it is.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import cv2
import numpy as np
import torch

from kbh.errors import KbhError
from kbh.grabcut import guided_coefficients
from kbh.strokes import Stroke, hard_labels

from .checkpoint import load_checkpoint, model_from_checkpoint
from .data import normalize
from .interactive import encode_strokes, predict, scale_stroke

OPTIONS = ("iterations", "cache_size")


class ModelEngine:
    """One frame, one model; not thread-safe (one caller at a time, like GrabCutSession)."""

    def __init__(self, model, ckpt: dict, image: np.ndarray, prior: np.ndarray | None = None, iterations: int = 1,
                 cache_size: int = 256):
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"image must be RGB uint8 (H, W, 3), got {image.dtype} {image.shape}")
        self.model, self.iterations, self.cache_size = model, iterations, cache_size
        info = ckpt["interactive"]
        self.encoding, self.distance = info["encoding"], float(info["distance"])
        self.label = f"Model {ckpt['model_config']['name']} (step {int(ckpt['step'])})"
        self.shape = image.shape[:2]
        H, W = self.shape
        h, w = (int(v) for v in ckpt["input_size"])
        self.size = (h, w)
        self._sx, self._sy = w / W, h / H
        small = cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA if h * w < H * W else cv2.INTER_LINEAR)
        norm = ckpt["normalization"]
        self._x = normalize(small, norm["mean"], norm["std"])[None]
        self._guide = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255.0
        self._guide_small = cv2.cvtColor(small, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255.0
        if prior is None:
            self._root = np.zeros((h, w), np.float32)
            self._root_full = np.zeros((H, W), np.uint8)
        else:
            prior = np.clip(np.asarray(prior, np.float32), 0.0, 1.0)
            if prior.shape != self.shape:
                raise ValueError(f"prior shape {prior.shape} does not match the image {self.shape}")
            self._root = cv2.resize(prior, (w, h), interpolation=cv2.INTER_AREA)
            self._root_full = (prior >= 0.5).astype(np.uint8)
        self._cache: OrderedDict[tuple[Stroke, ...], np.ndarray] = OrderedDict()  # prefix -> probability (h, w)

    def update(self, strokes: list[Stroke]) -> np.ndarray:
        """uint8 (H, W) {0,1} mask for the whole current stroke list."""
        strokes = tuple(strokes)
        if not strokes:
            return self._root_full.copy()
        prob = self.probability(strokes)
        mask = self._full_resolution(prob)
        hard = hard_labels(list(strokes), self.shape)
        return np.where(hard >= 0, hard, mask).astype(np.uint8)

    def probability(self, strokes: tuple[Stroke, ...]) -> np.ndarray:
        """Hand probability (h, w) at the network's size after `strokes`: from the longest cached prefix, one
        network step per further stroke."""
        k = len(strokes)
        while k > 0 and strokes[:k] not in self._cache:
            k -= 1
        prob = self._cache[strokes[:k]] if k else self._root
        if k:
            self._cache.move_to_end(strokes[:k])
        for j in range(k + 1, len(strokes) + 1):
            prob = self._step(prob, strokes[:j])
            self._cache[strokes[:j]] = prob
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return prob

    @torch.inference_mode()
    def _step(self, prev: np.ndarray, strokes: tuple[Stroke, ...]) -> np.ndarray:
        small = [scale_stroke(s, self._sx, self._sy) for s in strokes]
        enc = torch.from_numpy(encode_strokes(small, self.size, self.encoding, self.distance))[None]
        mask = torch.from_numpy(prev)[None, None]
        logits = predict(self.model, self._x, mask, enc, self.iterations)[-1]
        return logits.softmax(1)[0, 1].numpy().copy()

    def full_probability(self, strokes: list[Stroke]) -> np.ndarray:
        """Hand probability (H, W) float32 in [0, 1] at the frame's size after `strokes` (no hard labels): e.g.
        a prior for GrabCut."""
        strokes = tuple(strokes)
        prob = self.probability(strokes) if strokes else self._root
        return np.clip(self._upsample(prob), 0.0, 1.0)

    def _upsample(self, prob: np.ndarray) -> np.ndarray:
        """Probability at the network's size -> the frame's, following image edges (fast guided filter, He & Sun
        2015: coefficients at low resolution, applied to the full-resolution guide, as kbh.grabcut does)."""
        H, W = self.shape
        if prob.shape == (H, W):
            return prob
        a, b = guided_coefficients(self._guide_small, prob.astype(np.float32), 1, 1e-2)
        a = cv2.resize(a, (W, H), interpolation=cv2.INTER_LINEAR)
        b = cv2.resize(b, (W, H), interpolation=cv2.INTER_LINEAR)
        return a * self._guide + b

    def _full_resolution(self, prob: np.ndarray) -> np.ndarray:
        return (self._upsample(prob) > 0.5).astype(np.uint8)


def make_factory(checkpoint: str | Path | None = None, **options):
    """The "model" engine's factory (entry point `kbh.engines`): loads the checkpoint once, then
    factory(image, prior=None, **kw) -> ModelEngine (kw such as seed are ignored)."""
    if checkpoint is None:
        raise KbhError("the model engine needs a checkpoint trained with `kbh train --interactive` (--checkpoint PATH)")
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise KbhError(f"model engine: unknown option(s) {', '.join(unknown)}; known: {', '.join(OPTIONS)}")
    ckpt = load_checkpoint(checkpoint)
    if not ckpt.get("interactive"):
        raise KbhError(f"{checkpoint}: not an interactive checkpoint (trained without --interactive, it takes no "
                       f"strokes); train one with `kbh train --interactive`")
    if not ckpt.get("input_size"):
        raise KbhError(f"{checkpoint}: the checkpoint records no input_size")
    model = model_from_checkpoint(ckpt, interactive=True)
    iterations = int(options.get("iterations", 1))
    if iterations < 1:
        raise KbhError(f"model engine: iterations {iterations}: must be at least 1")
    cache_size = int(options.get("cache_size", 256))

    def factory(image: np.ndarray, prior: np.ndarray | None = None, **kw) -> ModelEngine:
        return ModelEngine(model, ckpt, image, prior, iterations=iterations, cache_size=cache_size)

    factory.engine_name = "model"  # type: ignore[attr-defined]
    return factory


class ModelGrabCutEngine:
    """The "model-grabcut" engine: the model's hand probability after the strokes starts GrabCut (its starting
    labels, from which the colour models are learned), then GrabCut decides every pixel with the same strokes as
    hard labels. Nothing of the model's is pinned: on the validation person (HGR1 04, human protocol) pinning its
    confident pixels as definite cost strokes (NoC@90 3.3) where starting from them did not (1.7, IoU after one
    stroke 0.92 against GrabCut's 0.81). Why both: the model runs at a low resolution and is vague at the hand's
    boundary, where GrabCut follows the image; GrabCut alone starts from one stroke's colours. A function of the
    stroke list, as both parts are."""

    def __init__(self, model_engine: ModelEngine, image: np.ndarray, cache_size: int = 64):
        self.model_engine = model_engine
        self.label = f"{model_engine.label} + GrabCut"
        self._image = image
        self._cache: OrderedDict[tuple[Stroke, ...], np.ndarray] = OrderedDict()
        self._cache_size = cache_size

    def update(self, strokes: list[Stroke]) -> np.ndarray:
        from kbh.grabcut import GrabCutSession

        strokes = tuple(strokes)
        if not strokes:
            return self.model_engine.update([])
        bits = self._cache.get(strokes)
        n = self._image.shape[0] * self._image.shape[1]
        if bits is not None:
            self._cache.move_to_end(strokes)
            return np.unpackbits(bits, count=n).reshape(self._image.shape[:2])
        prob = self.model_engine.full_probability(list(strokes))
        mask = GrabCutSession(self._image, prior=prob, prior_high=1.0, prior_low=0.0).update(list(strokes))
        self._cache[strokes] = np.packbits(mask)
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return mask


def make_hybrid_factory(checkpoint: str | Path | None = None, **options):
    """The "model-grabcut" engine's factory (entry point `kbh.engines`): the model engine's factory, with
    GrabCut refining each of its results (ModelGrabCutEngine)."""
    model_factory = make_factory(checkpoint, **options)

    def factory(image: np.ndarray, prior: np.ndarray | None = None, **kw) -> ModelGrabCutEngine:
        return ModelGrabCutEngine(model_factory(image, prior), np.ascontiguousarray(image))

    factory.engine_name = "model-grabcut"  # type: ignore[attr-defined]
    return factory
