import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, DistributedSampler

from kbh.errors import KbhError
from training.data import (IMAGENET_MEAN, IMAGENET_STD, ShardDataset, SkipSampler, normalize, paste_on_background,
                           random_rotate_flip,
                           rank_indices, steps_per_epoch)
from tests.training.helpers import make_shards, manifest_id_of


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return make_shards(tmp_path_factory.mktemp("shards"), counts={"train": 6, "val": 3}, size=(32, 48))


def test_items_shapes_and_normalisation(shards):
    ds = ShardDataset(shards, "train")
    assert len(ds) == 6 and ds.manifest_id == manifest_id_of(shards)
    item = ds[2]
    assert item["image"].shape == (3, 32, 48) and item["image"].dtype == torch.float32
    assert item["mask"].shape == (32, 48) and item["mask"].dtype == torch.int64
    raw = ds.raw(2)
    back = item["image"] * torch.tensor(IMAGENET_STD).view(3, 1, 1) + torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    assert np.allclose(back.permute(1, 2, 0).numpy() * 255, raw["image"], atol=1e-3)
    assert np.array_equal(item["mask"].numpy(), raw["mask"])


def test_flip_mirrors_image_and_mask_exactly():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (8, 10, 3), dtype=np.uint8)
    mask = (rng.random((8, 10)) > 0.5).astype(np.uint8)
    im2, m2 = random_rotate_flip(image, mask, 0.0, True)
    assert np.array_equal(im2, image[:, ::-1]) and np.array_equal(m2, mask[:, ::-1])


def test_rotation_keeps_labels_and_moves_mask_with_image():
    mask = np.zeros((41, 61), np.uint8)
    mask[10:30, 20:50] = 1
    image = np.repeat(mask[..., None] * 255, 3, axis=2).astype(np.uint8)
    im2, m2 = random_rotate_flip(image, mask, 10.0, False)
    assert set(np.unique(m2)) <= {0, 1}  # nearest neighbour: no invented label values
    assert not np.array_equal(m2, mask)
    agree = np.mean((im2[..., 0] > 127) == (m2 == 1))
    assert agree > 0.98  # image and mask rotated by the same transform


def test_augmentation_reproducible_from_seed(shards):
    ds = ShardDataset(shards, "train", augment=True)
    torch.manual_seed(3)
    a = ds[0]["mask"]
    torch.manual_seed(3)
    b = ds[0]["mask"]
    assert torch.equal(a, b)
    assert set(torch.unique(a).tolist()) <= {0, 1}


def test_worker_processes_open_their_own_files(shards):
    ds = ShardDataset(shards, "val")
    ds[0]  # open handles in this process first: the loader must still work in a forked worker
    in_proc = [ds[i]["mask"] for i in range(len(ds))]
    loader = DataLoader(ds, batch_size=1, num_workers=1)
    from_worker = [b["mask"][0] for b in loader]
    assert all(torch.equal(a, b) for a, b in zip(in_proc, from_worker))


def test_missing_split_or_folder_is_a_clear_error(shards, tmp_path):
    with pytest.raises(KbhError, match="has no 'test' frames"):
        ShardDataset(shards, "test")
    with pytest.raises(KbhError, match="no such shard folder"):
        ShardDataset(tmp_path / "nope", "train")


def test_samplers_and_epoch_arithmetic():
    base = DistributedSampler(range(10), num_replicas=1, rank=0, shuffle=True, seed=0)
    base.set_epoch(2)
    full = list(base)
    assert list(SkipSampler(base, 4)) == full[4:] and len(SkipSampler(base, 4)) == 6
    parts = [rank_indices(7, r, 3) for r in range(3)]
    assert sorted(sum(parts, [])) == list(range(7))
    assert steps_per_epoch(10, 4, 1) == 3 and steps_per_epoch(10, 4, 2) == 2 and steps_per_epoch(3, 8, 1) == 1


def test_normalize_shape():
    x = normalize(np.zeros((4, 5, 3), np.uint8))
    assert x.shape == (3, 4, 5)
    assert x[0, 0, 0].item() == pytest.approx(-IMAGENET_MEAN[0] / IMAGENET_STD[0])


def test_random_crop_is_one_window_of_both(shards):
    from training.data import random_crop

    image = np.arange(10 * 12 * 3, dtype=np.uint8).reshape(10, 12, 3)
    mask = (np.arange(10 * 12).reshape(10, 12) % 2).astype(np.uint8)
    torch.manual_seed(0)
    im, m = random_crop(image, mask, (4, 5))
    assert im.shape == (4, 5, 3) and m.shape == (4, 5)
    top, left = np.argwhere(image[..., 0] == im[0, 0, 0])[0]  # values are unique: find the window
    np.testing.assert_array_equal(im, image[top:top + 4, left:left + 5])
    np.testing.assert_array_equal(m, mask[top:top + 4, left:left + 5])
    h, w = ShardDataset(shards, "train").raw(0)["mask"].shape
    ds = ShardDataset(shards, "train", augment=True, crop=(h // 2, w // 2))
    torch.manual_seed(1)
    a = ds[0]
    torch.manual_seed(1)
    b = ds[0]
    assert a["image"].shape == (3, h // 2, w // 2) and torch.equal(a["mask"], b["mask"])
    with pytest.raises(KbhError, match="larger than the frames"):
        ShardDataset(shards, "train", augment=True, crop=(h + 1, w))


def test_paste_puts_the_hand_on_the_other_frames_background_without_its_hand():
    h, w = 40, 60
    mask = np.zeros((h, w), np.uint8)
    mask[10:30, 5:25] = 1
    image = np.full((h, w, 3), 200, np.uint8)  # hand 200, its own background 200 too: only the mask tells
    background = np.full((h, w, 3), 40, np.uint8)
    bg_mask = np.zeros((h, w), np.uint8)
    bg_mask[5:35, 40:55] = 1
    background[bg_mask == 1] = (230, 180, 150)  # the other frame's own hand
    out = paste_on_background(image, mask, background, bg_mask, tone=0.5, background_tone=2.0)
    assert out.shape == image.shape and out.dtype == np.uint8
    assert np.all(out[mask == 1] == 100)  # the hand, its brightness scaled by tone (200 * 0.5)
    far = np.ones((h, w), bool)
    far[8:32, 3:27] = False  # away from the pasted hand's feathered edge
    far[4:36, 39:56] = False  # and from the other frame's hand, inpainted with a one-pixel margin
    assert np.all(out[far] == 80)  # the background, scaled by background_tone (40 * 2)
    # the other frame's hand is inpainted from its surroundings: no trace of its colour is left
    assert np.abs(out[bg_mask == 1].astype(int) - 80).max() <= 6


def test_paste_keeps_masks_and_is_reproducible_from_seed(shards):
    plain, pasted = ShardDataset(shards, "train", augment=True), ShardDataset(shards, "train", augment=True, paste=1.0)
    torch.manual_seed(5)
    a = pasted[1]
    torch.manual_seed(5)
    b = pasted[1]
    torch.manual_seed(5)
    c = plain[1]
    assert torch.equal(a["image"], b["image"]) and torch.equal(a["mask"], b["mask"])
    assert torch.equal(a["mask"], c["mask"])  # the sample's own (augmented) mask: only the pixels around it change
    assert not torch.equal(a["image"], c["image"])
