"""Synthetic keyboard-hand scenes: determinism, shapes, plausible masks, smooth motion, accessories, workspace."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from kbh.errors import KbhError
from kbh.imageio import read_image, read_mask_png
from kbh.synth import (person_attributes, render_sequence, sequence_attributes, sequence_seed,
                       synthesize_workspace)
from kbh.synth.render import _render
from kbh.workspace import PERSON_ATTRIBUTES, SEQUENCE_ATTRIBUTES, Workspace

SMALL = (115, 153)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def test_same_seed_gives_identical_bytes_and_other_seeds_differ():
    a = list(render_sequence(3, 4, SMALL))
    b = list(render_sequence(3, 4, SMALL))
    c = list(render_sequence(4, 4, SMALL))
    for (ia, ma), (ib, mb) in zip(a, b):
        assert ia.tobytes() == ib.tobytes() and ma.tobytes() == mb.tobytes()
    assert a[0][0].tobytes() != c[0][0].tobytes()
    # Consecutive frames differ (motion and noise), they are not one image repeated.
    assert a[0][0].tobytes() != a[1][0].tobytes()


@pytest.mark.parametrize("size", [(230, 306), (64, 80), (120, 96)])
def test_shapes_dtypes_and_binary_mask(size):
    frames = list(render_sequence(11, 2, size))
    assert len(frames) == 2
    for img, mask in frames:
        assert img.shape == (*size, 3) and img.dtype == np.uint8
        assert mask.shape == size and mask.dtype == np.uint8
        assert set(np.unique(mask)) <= {0, 1}


def test_mask_covers_a_plausible_fraction_and_hands_enter_from_the_bottom():
    for seed in range(12):
        frame = next(_render(seed, 1, SMALL, None, None))
        img, mask = frame.image, frame.mask
        assert 0.03 <= mask.mean() <= 0.40, (seed, mask.mean())
        # The forearm (or the sleeve over it) comes in from the bottom edge.
        assert (mask[-1] | frame.accessories[-1]).any(), f"seed {seed}: no arm reaches the bottom edge"
        assert not mask[0].any(), f"seed {seed}: hand touches the top edge"
        # The image is not flat where the hand is: hand and background differ on average.
        hand, bg = img[mask > 0].mean(axis=0), img[mask == 0].mean(axis=0)
        assert np.abs(hand - bg).max() > 5


def test_consecutive_masks_overlap_so_propagation_is_meaningful():
    ious = []
    for seed in (0, 1, 2):
        masks = [m for _, m in render_sequence(seed, 15)]
        ious += [_iou(a, b) for a, b in zip(masks, masks[1:])]
    assert np.mean(ious) > 0.8
    assert min(ious) > 0.5
    # ...but the hands do move: not every pair identical.
    assert min(ious) < 1.0


def test_watch_and_bracelet_are_not_hand():
    person = {"skin_tone": "medium", "watch": "yes", "bracelet": "yes", "tattoo": "no", "nail_polish": "no",
              "rings": "no"}
    bare = {**person, "watch": "no", "bracelet": "no"}
    seq = {"desk": "white", "desk_position": "center", "keyboard": "dark", "lighting": "bright",
           "objects_on_desk": "no"}
    worn = list(_render(5, 3, SMALL, person, seq))
    plain = list(_render(5, 3, SMALL, bare, seq))
    for w, p in zip(worn, plain):
        acc = w.accessories > 0
        assert acc.sum() > 20  # a watch and a bracelet are visible
        assert not (w.mask[acc]).any()  # no accessory pixel is hand
        # Same pose without them: the accessories sit on the arm, and are cut out of the hand mask.
        assert p.mask[acc].mean() > 0.5
        np.testing.assert_array_equal(w.mask, p.mask & ~acc)
        assert not p.accessories.any() or (p.accessories > 0).sum() < acc.sum()


def test_attributes_follow_the_kbh_table():
    rng = np.random.default_rng(0)
    for _ in range(20):
        p, s = person_attributes(rng), sequence_attributes(rng)
        assert set(p) == set(PERSON_ATTRIBUTES) and set(s) == set(SEQUENCE_ATTRIBUTES)
        assert all(isinstance(v, str) for v in [*p.values(), *s.values()])
        assert p["skin_tone"] in ("light", "medium", "dark")
        assert p["watch"] in ("yes", "no")


def test_grabcut_separates_hand_from_background():
    """GrabCut, started from a loose band around the true outline, recovers the hand."""
    for seed in (0, 1):
        img, mask = next(render_sequence(seed, 1))
        k = np.ones((9, 9), np.uint8)
        gc = np.full(mask.shape, cv2.GC_PR_BGD, np.uint8)
        gc[cv2.dilate(mask, k, iterations=2) > 0] = cv2.GC_PR_FGD
        gc[cv2.erode(mask, k) > 0] = cv2.GC_FGD
        gc[cv2.dilate(mask, k, iterations=4) == 0] = cv2.GC_BGD
        cv2.grabCut(cv2.cvtColor(img, cv2.COLOR_RGB2BGR), gc, None, np.zeros((1, 65)), np.zeros((1, 65)), 4,
                    cv2.GC_INIT_WITH_MASK)
        assert _iou((gc == cv2.GC_FGD) | (gc == cv2.GC_PR_FGD), mask > 0) > 0.85


def test_bad_size_is_a_clear_error():
    with pytest.raises(KbhError, match="too small"):
        next(render_sequence(0, 1, (10, 10)))


# -- workspace ------------------------------------------------------------------------------------------------

TINY = (48, 64)


def test_synthesize_workspace_round_trip(tmp_path):
    ws = Workspace.init(tmp_path / "ws")
    summary = synthesize_workspace(ws, persons=2, sequences_per_person=2, frames=3, size=TINY, seed=7,
                                   progress=False)
    assert (summary["persons"], summary["sequences"], summary["frames"]) == (2, 4, 12)
    assert summary["seconds"] >= 0
    assert list(ws.persons()) == ["p000", "p001"]
    assert ws.persons()["p001"] == person_attributes(np.random.default_rng([7, 1]))
    seqs = ws.sequences()
    assert list(seqs) == ["p000_s00", "p000_s01", "p001_s00", "p001_s01"]
    assert seqs["p001_s01"] == ("p001", sequence_attributes(np.random.default_rng([7, 1, 1, 1])))
    frames = ws.frames()
    assert len(frames) == 12 and {f.status for f in frames} == {"done"} and {f.source for f in frames} == {"import"}
    # Stored image and mask are exactly what render_sequence gives for that (person, sequence).
    f = ws.frames(sequence="p001_s01")[2]
    expected = list(render_sequence(sequence_seed(7, 1, 1), 3, TINY, ws.persons()["p001"], seqs["p001_s01"][1]))[2]
    np.testing.assert_array_equal(ws.image(f), expected[0])
    np.testing.assert_array_equal(ws.mask(f), expected[1])
    assert (f.height, f.width) == TINY
    ws.close()
    # Reopened from disk, still all there; synthesizing the same persons again is refused.
    with Workspace.open(tmp_path / "ws") as again:
        assert again.count_frames() == 12
        with pytest.raises(KbhError, match="p000"):
            synthesize_workspace(again, 1, 1, 1, size=TINY, progress=False)
        with pytest.raises(KbhError, match="frames"):
            synthesize_workspace(again, 1, 1, 0, size=TINY, progress=False)


def test_persons_do_not_depend_on_how_many_were_asked(tmp_path):
    def shas(n, name):
        with Workspace.init(tmp_path / name) as ws:
            synthesize_workspace(ws, persons=n, sequences_per_person=1, frames=2, size=TINY, seed=3, progress=False)
            return {f.key: f.sha256 for f in ws.frames()}, ws.persons()

    two, three = shas(2, "a"), shas(3, "b")
    assert two[0] == {k: v for k, v in three[0].items() if k.startswith(("p000", "p001"))}
    assert two[1] == {k: v for k, v in three[1].items() if k in ("p000", "p001")}


def test_unlabeled_keeps_ground_truth_beside_the_workspace(tmp_path):
    with Workspace.init(tmp_path / "ws") as ws:
        synthesize_workspace(ws, persons=1, sequences_per_person=1, frames=2, size=TINY, seed=1, labeled=False,
                             progress=False)
        frames = ws.frames()
        assert {f.status for f in frames} == {"unlabeled"} and all(ws.mask(f) is None for f in frames)
        truth = [m for _, m in render_sequence(sequence_seed(1, 0, 0), 2, TINY, ws.persons()["p000"],
                                               ws.sequences()["p000_s00"][1])]
        for f, m in zip(frames, truth):
            path = ws.ground_truth_path(f)
            np.testing.assert_array_equal(read_mask_png(path), m)
            assert set(np.unique(cv2.imread(str(path), cv2.IMREAD_UNCHANGED))) <= {0, 255}
            assert read_image(ws.root / f.path).shape == (*TINY, 3)


def test_worker_processes_give_the_same_workspace(tmp_path):
    def shas(workers, name):
        with Workspace.init(tmp_path / name) as ws:
            synthesize_workspace(ws, persons=2, sequences_per_person=2, frames=2, size=TINY, seed=5,
                                 progress=False, workers=workers)
            return [(f.key, f.sha256, ws.mask(f).tobytes()) for f in ws.frames()], ws.persons(), ws.sequences()

    assert shas(1, "serial") == shas(2, "pool")
