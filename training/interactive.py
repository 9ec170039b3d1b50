"""Stroke-conditioned input for the interactive model, and the simulated strokes it is trained with.

RITM (Sofiiuk et al. 2021, "Reviving Iterative Training with Mask Guidance for Interactive Segmentation"): the
network sees the image, its own previous mask and the person's clicks (here strokes), and is trained on strokes
simulated from the ground truth in rounds, each round's prediction fed back as the next round's mask.

The input is 3 + 3 channels at the network's size:
    normalised RGB (3) | current mask (hand probability of the previous interaction; zeros, or the prior) |
    hand strokes | background strokes
Two encodings of a stroke set:
- "disk": its footprint (the brush disk swept along the polyline), 1 inside, 0 outside;
- "distance": RITM-style, 1 - min(d, D) / D with d the distance to the footprint (1 on it, 0 from D px away).
Seedable models also get the current mask as s0 (their mask state), so the recurrence starts from it.

Measured (DEFAULT_ENCODING = "distance"): two short runs that differ only in --encoding: dru4, --iterations 1,
100 steps, batch 8, lr 0.05, radius 3, D 20, rounds 3, seed 0, on the HGR1 shards of persons 01-05 at 96x128
(train 01, 02, 03, 05; val 04, 10 frames); validation = centre protocol, 10 strokes, at steps 50 / 100:
    encoding   mIoU after 3 strokes   NoC@90 (hand IoU, cap 10)   mIoU after 1 / 10 strokes (step 100)
    distance   0.522 / 0.484          6.2 / 6.2                   0.429 / 0.562
    disk       0.421 / 0.423          8.7 / 7.5                   0.408 / 0.484
A short, noisy comparison (one val person), but distance wins at both points: at this scale (a 5 px brush on a
480x640 frame is 1 px at 96x128) a thin footprint is little signal, while the distance map spreads it over D px.

Colour shuffle (--colour-shuffle p, default 0.5: permute a sample's RGB channels with probability p). Without it the
model segments by skin colour and all but ignores the strokes: on the val person's orange-backdrop frames it
marks the backdrop as hand and the stroked hand as background. dru4, distance encoding, otherwise as above:
    colour shuffle 0     480-step run, at step 320: mIoU after 1 / 3 / 10 strokes 0.42 / 0.46 / 0.53
                         (best of its evals at steps 80..480: 0.47 after 3 strokes)
    colour shuffle 0.5   360-step run, at step 360: mIoU after 1 / 3 / 10 strokes 0.73 / 0.78 / 0.87
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import torch

from kbh.grabcut import iou
from kbh.simulated_annotator import human_stroke, next_stroke
from kbh.strokes import BACKGROUND, FOREGROUND, Stroke, draw_stroke, hard_labels

ENCODINGS = ("disk", "distance")
DEFAULT_ENCODING = "distance"
DEFAULT_DISTANCE = 20.0  # D of the distance encoding, in network pixels
EXTRA_CHANNELS = 3  # current mask, hand strokes, background strokes


# ---- input assembly --------------------------------------------------------------------------------------------


def scale_stroke(stroke: Stroke, sx: float, sy: float) -> Stroke:
    """A stroke in image pixels -> the same stroke at another size (x scaled by sx, y by sy; radius >= 1)."""
    pts = tuple(((x + 0.5) * sx - 0.5, (y + 0.5) * sy - 0.5) for x, y in stroke.points)
    return Stroke(stroke.label, max(1.0, stroke.radius * math.sqrt(sx * sy)), pts)


def encode_strokes(strokes: list[Stroke], shape: tuple[int, int], encoding: str = DEFAULT_ENCODING,
                   distance: float = DEFAULT_DISTANCE) -> np.ndarray:
    """float32 (2, H, W): channel 0 encodes the hand strokes, channel 1 the background strokes."""
    if encoding not in ENCODINGS:
        raise ValueError(f"unknown stroke encoding {encoding!r}; expected one of {', '.join(ENCODINGS)}")
    h, w = shape
    out = np.zeros((2, h, w), np.float32)
    for c, label in enumerate((FOREGROUND, BACKGROUND)):
        footprint = np.zeros((h, w), np.uint8)
        for s in strokes:
            if s.label == label:
                draw_stroke(footprint, s, 1)
        if not footprint.any():
            continue
        if encoding == "disk":
            out[c] = footprint
        else:
            d = cv2.distanceTransform(1 - footprint, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
            out[c] = 1.0 - np.minimum(d, distance) / distance
    return out


def model_input(image: torch.Tensor, mask: torch.Tensor, encoded: torch.Tensor) -> torch.Tensor:
    """(B,3,H,W) normalised image + (B,1,H,W) current mask + (B,2,H,W) encoded strokes -> (B,6,H,W)."""
    return torch.cat([image, mask, encoded], dim=1)


def predict(model, image: torch.Tensor, mask: torch.Tensor, encoded: torch.Tensor, iterations: int = 1) -> list[torch.Tensor]:
    """The model's logits per iteration on the assembled input; seedable models get the current mask as s0."""
    x = model_input(image, mask, encoded)
    s0 = mask if getattr(model, "seedable", False) else None
    return model(x, iterations=iterations, s0=s0)


# ---- simulated strokes (training) ------------------------------------------------------------------------------


def _distance_inside(region: np.ndarray) -> np.ndarray:
    return cv2.distanceTransform(np.pad(region.astype(np.uint8), 1), cv2.DIST_L2, 3)[1:-1, 1:-1]


def _walk(inside, cx: float, cy: float, dx: float, dy: float, half: float) -> list[tuple[int, int]]:
    """Polyline through (cx, cy) along (dx, dy), up to `half` px each way while inside(x, y)."""
    ends = []
    for sign in (1.0, -1.0):
        t = 0.0
        while t + 1.0 <= half and inside(cx + sign * (t + 1.0) * dx, cy + sign * (t + 1.0) * dy):
            t += 1.0
        ends.append((int(round(cx + sign * t * dx)), int(round(cy + sign * t * dy))))
    pts = [ends[1], (int(round(cx)), int(round(cy))), ends[0]]
    return [p for j, p in enumerate(pts) if j == 0 or p != pts[j - 1]]


def region_stroke(region: np.ndarray, label: int, rng: np.random.Generator, radius: float, length: float,
                  along_axis: bool = False) -> Stroke | None:
    """A stroke of about `length` px that stays inside `region` (bool) with its brush; None if none fits.

    along_axis: through the region's deepest point along its main axis (how people start a hand), else from a
    random interior point in a random direction."""
    d = _distance_inside(region)
    r = float(radius)
    if d.max() < r + 1.5:
        r = max(1.0, float(d.max()) - 1.5)
        if d.max() < 2.5:
            return None
    r = float(max(1, int(r)))  # the rasterizer rounds the radius; stay on the safe side
    h, w = region.shape
    if along_axis:
        m = cv2.moments(region.astype(np.uint8), binaryImage=True)
        theta = 0.5 * math.atan2(2 * m["mu11"], m["mu20"] - m["mu02"]) + rng.normal(0, 0.15)
        # the deep point (d within 30% of its maximum) nearest the region's centroid, jittered by a few px
        ys, xs = np.nonzero(d >= max(0.7 * d.max(), r + 1.5))
        gy, gx = m["m01"] / m["m00"] + rng.normal(0, 2), m["m10"] / m["m00"] + rng.normal(0, 2)
        j = int(np.argmin((ys - gy) ** 2 + (xs - gx) ** 2))
        cy, cx = ys[j], xs[j]
    else:
        ys, xs = np.nonzero(d > r + 1.5)
        j = int(rng.integers(len(ys)))
        cy, cx, theta = ys[j], xs[j], rng.uniform(0, math.pi)

    def inside(x, y):
        xi, yi = int(round(x)), int(round(y))
        return 0 <= xi < w and 0 <= yi < h and d[yi, xi] > r + 1.5

    pts = _walk(inside, float(cx), float(cy), math.cos(theta), math.sin(theta), length / 2)
    return Stroke(label, r, tuple(pts))


def initial_strokes(gt: np.ndarray, rng: np.random.Generator, radius: float) -> list[Stroke]:
    """What a person draws first: a long hand stroke along the hand (about half its length), then 0-1 more hand
    strokes and 0-1 background strokes of 10-40% of the frame's shorter side."""
    gt = gt.astype(bool)
    if not gt.any():
        s = region_stroke(~gt, BACKGROUND, rng, radius, 0.3 * min(gt.shape))
        return [s] if s is not None else []
    ys, xs = np.nonzero(gt)
    extent = math.hypot(ys.max() - ys.min() + 1, xs.max() - xs.min() + 1)
    strokes = [region_stroke(gt, FOREGROUND, rng, radius, rng.uniform(0.4, 0.7) * extent, along_axis=True)]
    short = min(gt.shape)
    if rng.random() < 0.5:
        strokes.append(region_stroke(gt, FOREGROUND, rng, radius, rng.uniform(0.1, 0.4) * short))
    if rng.random() < 0.5 and not gt.all():
        strokes.append(region_stroke(~gt, BACKGROUND, rng, radius, rng.uniform(0.1, 0.4) * short))
    return [s for s in strokes if s is not None]


def correction_stroke(mask: np.ndarray, gt: np.ndarray, rng: np.random.Generator, radius: float) -> Stroke | None:
    """The next correction, in the largest error region: kbh.simulated_annotator's centre protocol, or its human protocol
    half of the time."""
    if rng.random() < 0.5:
        s = human_stroke(mask, gt, rng, radius=radius)
        if s is not None:
            return s
    return next_stroke(mask, gt, radius=radius, length=int(rng.integers(10, 31)))


def shuffle_colours(image: torch.Tensor, rng: np.random.Generator, p: float) -> torch.Tensor:
    """With probability p per sample, permute the (normalised) RGB channels: skin colour alone then cannot tell
    the hand, so the model has to use the strokes (--colour-shuffle, default 0.5)."""
    if p <= 0:
        return image
    out = image.clone()
    for i in range(image.shape[0]):
        if rng.random() < p:
            out[i] = image[i, torch.from_numpy(rng.permutation(3))]
    return out


def invert_colours(image: torch.Tensor, rng: np.random.Generator, p: float, mean, std) -> torch.Tensor:
    """With probability p per sample, invert some of its RGB channels (each with probability 1/2, at least one;
    v -> 1 - v before normalisation): a dark hand on a light shirt then looks like a light hand on a dark one,
    so brightness alone cannot tell the hand either (--colour-invert)."""
    if p <= 0:
        return image
    out = image.clone()
    mean_t = torch.as_tensor(mean, dtype=image.dtype, device=image.device).view(3, 1, 1)
    std_t = torch.as_tensor(std, dtype=image.dtype, device=image.device).view(3, 1, 1)
    for i in range(image.shape[0]):
        if rng.random() < p:
            flip = rng.random(3) < 0.5
            if not flip.any():
                flip[rng.integers(3)] = True
            c = torch.from_numpy(np.nonzero(flip)[0])
            # (1 - v - m) / s = (1 - 2m) / s - (v - m) / s
            out[i, c] = (1 - 2 * mean_t[c]) / std_t[c] - image[i, c]
    return out


def encode_batch(strokes: list[list[Stroke]], shape: tuple[int, int], encoding: str, distance: float,
                 device=None) -> torch.Tensor:
    """(B, 2, H, W) encodings of one stroke list per sample."""
    enc = np.stack([encode_strokes(s, shape, encoding, distance) for s in strokes])
    return torch.from_numpy(enc).to(device)


def with_hard_labels(prob: np.ndarray, strokes: list[Stroke]) -> np.ndarray:
    """The hand probability (H, W) with every stroked pixel set to its stroke's label (the last stroke wins)."""
    hard = hard_labels(strokes, prob.shape)
    return np.where(hard >= 0, hard, prob).astype(np.float32)


@torch.no_grad()
def simulate_rounds(model, image: torch.Tensor, gt: torch.Tensor, rng: np.random.Generator, rounds: int,
                    radius: float, encoding: str, distance: float) -> tuple[torch.Tensor, torch.Tensor]:
    """RITM's iterative training input for one batch: (current mask (B,1,H,W), encoded strokes (B,2,H,W)).

    Initial strokes from the ground truth (brush radius drawn per sample from [radius/2, 1.5 radius], at least
    1), then `rounds` correction rounds: the model (eval mode, one iteration) predicts, each sample gets a stroke
    in its largest error region, and the prediction becomes the current mask. No gradient."""
    b, _, h, w = image.shape
    gts = gt.cpu().numpy() == 1
    radii = rng.uniform(max(1.0, radius / 2), max(1.0, 1.5 * radius), b)
    strokes = [initial_strokes(gts[i], rng, radii[i]) for i in range(b)]
    prob = image.new_zeros((b, 1, h, w))
    enc = encode_batch(strokes, (h, w), encoding, distance, image.device)
    was_training = model.training
    model.eval()
    for _ in range(rounds):
        prob = predict(model, image, prob, enc, iterations=1)[-1].softmax(1)[:, 1:2]
        p = prob[:, 0].cpu().numpy()
        for i in range(b):
            mask = with_hard_labels(p[i], strokes[i]) > 0.5
            s = correction_stroke(mask, gts[i], rng, radii[i])
            if s is not None:
                strokes[i].append(s)
        enc = encode_batch(strokes, (h, w), encoding, distance, image.device)
    model.train(was_training)
    return prob, enc


@torch.no_grad()
def score_interactive(model, dataset, max_strokes: int, device, radius: float, encoding: str, distance: float,
                      batch: int = 8, rank: int = 0, world: int = 1) -> tuple[list[dict], float]:
    """Validation of an interactive model: the centre protocol (kbh.simulated_annotator.next_stroke, deterministic) for
    `max_strokes` strokes on every frame, one iteration per stroke seeded with the previous mask, hard labels
    imposed, at the shards' size. Returns (scores after k = 1..max_strokes strokes as IterationScorer.results()
    gives them, "iteration" = k; mean NoC@90 of the hand IoU, capped at max_strokes)."""
    from torch.utils.data import DataLoader, Subset

    from .data import rank_indices
    from .metrics import IterationScorer

    was_training = model.training
    model.eval()
    scorer = IterationScorer(max_strokes, device=device)
    noc = torch.zeros(2, dtype=torch.float64, device=device)  # [sum of NoC, frames]
    share = Subset(dataset, rank_indices(len(dataset), rank, world))
    for bt in DataLoader(share, batch_size=batch):
        image, gt = bt["image"].to(device), bt["mask"]
        b, _, h, w = image.shape
        gts = gt.numpy() == 1
        strokes: list[list[Stroke]] = [[] for _ in range(b)]
        prob = image.new_zeros((b, 1, h, w))
        masks = np.zeros((b, h, w), bool)
        reached = np.full(b, max_strokes, np.int64)
        probs = []
        for k in range(1, max_strokes + 1):
            for i in range(b):
                s = next_stroke(masks[i], gts[i], radius=radius)
                if s is not None:
                    strokes[i].append(s)
            enc = encode_batch(strokes, (h, w), encoding, distance, device)
            prob = predict(model, image, prob, enc, iterations=1)[-1].softmax(1)[:, 1:2]
            p = prob[:, 0].cpu().numpy()
            hard = np.stack([with_hard_labels(p[i], strokes[i]) for i in range(b)])
            probs.append(torch.from_numpy(hard).to(device))
            masks = hard > 0.5
            for i in range(b):
                if iou(masks[i], gts[i]) >= 0.9 and reached[i] == max_strokes:
                    reached[i] = k
        scorer.update(probs, gt.to(device))
        noc += torch.tensor([float(reached.sum()), float(b)], dtype=torch.float64, device=device)
    scorer.all_reduce()
    if world > 1:
        import torch.distributed as dist

        dist.all_reduce(noc)
    model.train(was_training)
    return scorer.results(), float(noc[0] / noc[1].clamp(min=1))
