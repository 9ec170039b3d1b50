"""HDF5 shard dataset for training and evaluation, with the paper's augmentation.

The shards (see kbh.shards) hold uint8 images and {0,1} masks already resized to one size, so a batch needs no
resizing. `kbh.shards.ShardReader` opens the HDF5 files lazily in the process that first reads them, so each
DataLoader worker gets its own handle (an h5py handle shared across fork is not safe).
"""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from kbh.errors import KbhError

# ImageNet statistics (RGB, 0..1 scale); stored in every checkpoint so inference normalises the same way.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def open_split(data_dir: str | Path, split: str):
    """ShardReader over one split of a shard folder that passes the at-open check (kbh.split_folder): its
    manifest lists exactly the shards present, with matching ids, sizes and counts. KbhError otherwise."""
    from kbh.shards import ShardReader
    from kbh.split_folder import open_split_folder

    folder = open_split_folder(data_dir)
    paths = folder.paths.get(split)
    if not paths:
        raise KbhError(f"{data_dir}: the split has no '{split}' frames (splits: "
                       f"{', '.join(k for k, v in folder.paths.items() if v) or 'none'})")
    return ShardReader(paths)


def has_split(data_dir: str | Path, split: str) -> bool:
    from kbh.split_folder import open_split_folder

    return bool(open_split_folder(data_dir).paths.get(split))


def random_rotate_flip(image: np.ndarray, mask: np.ndarray, angle: float, flip: bool):
    """Rotate both by `angle` degrees about the centre (image bilinear, mask nearest) and optionally mirror them.

    Borders are filled by reflection for both, so image and mask stay consistent at the corners and no fill
    value is invented for the mask.
    """
    if flip:
        image = image[:, ::-1]
        mask = mask[:, ::-1]
    if angle:
        h, w = mask.shape
        m = cv2.getRotationMatrix2D(((w - 1) / 2, (h - 1) / 2), angle, 1.0)
        image = cv2.warpAffine(np.ascontiguousarray(image), m, (w, h), flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_REFLECT_101)
        mask = cv2.warpAffine(np.ascontiguousarray(mask), m, (w, h), flags=cv2.INTER_NEAREST,
                              borderMode=cv2.BORDER_REFLECT_101)
    return np.ascontiguousarray(image), np.ascontiguousarray(mask)


def random_crop(image: np.ndarray, mask: np.ndarray, size: tuple[int, int]):
    """The same random (H, W) window of both; its corner drawn from torch's generator."""
    h, w = mask.shape
    top = int(torch.randint(0, h - size[0] + 1, ()).item())
    left = int(torch.randint(0, w - size[1] + 1, ()).item())
    return (np.ascontiguousarray(image[top:top + size[0], left:left + size[1]]),
            np.ascontiguousarray(mask[top:top + size[0], left:left + size[1]]))


def paste_on_background(image: np.ndarray, mask: np.ndarray, background: np.ndarray, background_mask: np.ndarray,
                        tone: float, background_tone: float = 1.0) -> np.ndarray:
    """The hand of (image, mask) on another frame's background (copy-paste augmentation, Ghiasi et al. 2021).

    The background frame's own hand is inpainted away first (Telea), so the composite shows one hand and its mask
    stays `mask`; the pasted hand's brightness is scaled by `tone` (0.35..1.15 in training: darker and lighter
    skin than the few persons a workspace starts with), and its edge is feathered by one pixel so the boundary is
    not an artificial step; the background's brightness is scaled by `background_tone`. All uint8 (H, W, 3) / {0,1} (H, W) of one size."""
    bg = background
    if background_mask.any():
        hole = cv2.dilate(background_mask.astype(np.uint8), np.ones((3, 3), np.uint8))
        bg = cv2.inpaint(np.ascontiguousarray(background), hole, 3, cv2.INPAINT_TELEA)
    hand = np.clip(image.astype(np.float32) * tone, 0, 255)
    bg = np.clip(bg.astype(np.float32) * background_tone, 0, 255)
    alpha = cv2.GaussianBlur(mask.astype(np.float32), (3, 3), 0)[..., None]
    alpha = np.maximum(alpha, mask[..., None].astype(np.float32))  # the labelled hand stays fully the hand
    return (hand * alpha + bg.astype(np.float32) * (1 - alpha) + 0.5).astype(np.uint8)


def normalize(image: np.ndarray, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> torch.Tensor:
    """uint8 (H, W, 3) RGB -> float32 (3, H, W), (x/255 - mean) / std."""
    x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float().div_(255.0)
    mean_t = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float32).view(3, 1, 1)
    return (x - mean_t) / std_t


class ShardDataset(Dataset):
    """Items: dict(image=float (3,H,W) normalised, mask=int64 (H,W) {0,1}, index=int).

    augment=True applies a random rotation in [-max_angle, max_angle] degrees and a horizontal flip with p=0.5
    (the paper's augmentation; docs/training.md), then, with `crop` (H, W), a random crop of that size (for
    large frames such as DRIVE's 584x565: train on crops, evaluate whole frames). Randomness comes from torch's
    generator, which DataLoader seeds per worker, so a run is reproducible from its seed.
    """

    def __init__(self, data_dir: str | Path, split: str, augment: bool = False, mean=IMAGENET_MEAN,
                 std=IMAGENET_STD, max_angle: float = 10.0, flip_p: float = 0.5,
                 crop: tuple[int, int] | None = None, paste: float = 0.0):
        self.reader = open_split(data_dir, split)
        self.paste = float(paste)
        self.split = split
        self.augment = augment
        self.mean, self.std = tuple(mean), tuple(std)
        self.max_angle, self.flip_p = max_angle, flip_p
        self.crop = tuple(crop) if crop else None
        if self.crop and len(self.reader):
            h, w = self.reader[0]["mask"].shape
            if self.crop[0] > h or self.crop[1] > w:
                raise KbhError(f"{data_dir}: crop {self.crop[0]}x{self.crop[1]} is larger than the frames ({h}x{w})")

    @property
    def manifest_id(self) -> str:
        return self.reader.manifest_id

    def __len__(self) -> int:
        return len(self.reader)

    def raw(self, i: int) -> dict:
        """The stored record: uint8 image and {0,1} mask, plus ids."""
        return self.reader[i]

    def _augmented(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        rec = self.reader[i]
        angle = (torch.rand(()).item() * 2 - 1) * self.max_angle
        flip = torch.rand(()).item() < self.flip_p
        image, mask = random_rotate_flip(rec["image"], rec["mask"], angle, flip)
        if self.crop:
            image, mask = random_crop(image, mask, self.crop)
        return image, mask

    def __getitem__(self, i: int) -> dict:
        if self.augment:
            image, mask = self._augmented(i)
            if self.paste > 0 and len(self) > 1 and torch.rand(()).item() < self.paste:
                j = (i + 1 + int(torch.randint(0, len(self) - 1, ()).item())) % len(self)  # any other frame
                bg, bg_mask = self._augmented(j)
                tone = 0.35 + 0.8 * torch.rand(()).item()
                bg_tone = 0.5 * 4.0 ** torch.rand(()).item()  # 0.5 .. 2, as often darker as brighter
                image = paste_on_background(image, mask, bg, bg_mask, tone, bg_tone)
        else:
            rec = self.reader[i]
            image, mask = rec["image"], rec["mask"]
        return {"image": normalize(image, self.mean, self.std),
                "mask": torch.from_numpy(np.ascontiguousarray(mask)).long(), "index": i}


class SkipSampler(torch.utils.data.Sampler):
    """The indices of `sampler` without the first `skip`: resumes an epoch part-way at the same order."""

    def __init__(self, sampler, skip: int = 0):
        self.sampler, self.skip = sampler, skip

    def __iter__(self):
        for k, i in enumerate(self.sampler):
            if k >= self.skip:
                yield i

    def __len__(self) -> int:
        return max(0, len(self.sampler) - self.skip)


def rank_indices(n: int, rank: int, world: int) -> list[int]:
    """Evaluation share of one process: every world-th frame, no padding, so no frame is counted twice."""
    return list(range(rank, n, world))


def steps_per_epoch(n: int, batch: int, world: int) -> int:
    """Optimizer steps in one epoch: DistributedSampler pads to a multiple of `world`; the last batch may be short."""
    return math.ceil(math.ceil(n / world) / batch)
