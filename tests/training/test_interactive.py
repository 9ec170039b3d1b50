"""The stroke-conditioned model (training/interactive.py, training/interactive_engine.py): stroke encodings, the
engine's promises (hard labels, a function of the stroke list), an interactive training run on tiny synthetic
shards that lowers the simulated NoC, and the one-line errors around interactive checkpoints."""

import numpy as np
import pytest
import torch

from kbh.cli import main as kbh_main
from kbh.errors import KbhError
from kbh.simulated_annotator import next_stroke, simulate
from kbh.strokes import BACKGROUND, FOREGROUND, Stroke, hard_labels
from training.checkpoint import load_checkpoint, save_checkpoint
from training.data import ShardDataset
from training.data import IMAGENET_MEAN, IMAGENET_STD, normalize
from training.interactive import encode_strokes, initial_strokes, invert_colours, scale_stroke
from training.interactive_engine import make_factory, make_hybrid_factory
from tests.training.helpers import make_shards


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(shards, trained checkpoint, the same model untrained) -- unet-g, 60 interactive steps at 32x48."""
    torch_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        root = tmp_path_factory.mktemp("interactive")
        shards = make_shards(root / "shards", counts={"train": 12, "val": 4})
        run = root / "run"
        assert kbh_main(["train", "--data", str(shards), "--out", str(run), "--model", "unet-g", "--interactive",
                         "--steps", "60", "--batch", "4", "--lr", "0.1", "--workers", "0", "--stroke-radius", "2",
                         "--rounds", "2", "--val-strokes", "3", "--seed", "0"]) == 0
        ckpt = load_checkpoint(run / "best.pt")
        from training.models import build_model

        torch.manual_seed(0)
        untrained = dict(ckpt, model=build_model(**ckpt["model_config"]).state_dict(), step=0)
        save_checkpoint(root / "untrained.pt", untrained)
        return shards, run / "best.pt", root / "untrained.pt"
    finally:
        torch.set_num_threads(torch_threads)


def test_disk_and_distance_encodings_by_hand():
    dot = Stroke(FOREGROUND, 1.0, ((5, 5),))  # radius 1 at (x, y) = (5, 5): a plus of 5 pixels
    disk = encode_strokes([dot], (11, 11), "disk")
    assert disk.shape == (2, 11, 11) and disk.dtype == np.float32
    plus = {(5, 5), (4, 5), (6, 5), (5, 4), (5, 6)}
    assert {(int(y), int(x)) for y, x in zip(*np.nonzero(disk[0]))} == plus
    assert not disk[1].any()  # no background stroke
    dist = encode_strokes([dot], (11, 11), "distance", distance=4.0)
    assert dist[0, 5, 5] == 1.0 and dist[0, 5, 6] == 1.0  # on the footprint
    assert dist[0, 5, 8] == pytest.approx(0.5, abs=1e-3)  # 2 px from (x=6, y=5): 1 - 2/4
    assert dist[0, 5, 7] == pytest.approx(0.75, abs=1e-3)
    assert dist[0, 0, 0] == 0.0  # farther than D
    bg = encode_strokes([Stroke(BACKGROUND, 1.0, ((2, 2), (8, 2)))], (11, 11), "disk")
    assert not bg[0].any() and bg[1, 2, 2:9].all() and bg[1, 1, 5] == 1 and bg[1, 4, 5] == 0
    with pytest.raises(ValueError):
        encode_strokes([dot], (11, 11), "gaussian")


def test_invert_colours_inverts_channels_before_normalisation():
    rgb = np.array([[[0, 51, 255], [102, 204, 153]]], np.uint8)  # (1, 2, 3)
    x = normalize(rgb)[None]
    out = invert_colours(x, np.random.default_rng(0), 1.0, IMAGENET_MEAN, IMAGENET_STD)
    flipped = [c for c in range(3) if not torch.allclose(out[0, c], x[0, c])]
    assert flipped  # p = 1: at least one channel of the sample is inverted
    want = normalize(255 - rgb)[None]
    for c in range(3):
        assert torch.allclose(out[0, c], want[0, c] if c in flipped else x[0, c], atol=1e-5)
    assert torch.equal(invert_colours(x, np.random.default_rng(0), 0.0, IMAGENET_MEAN, IMAGENET_STD), x)
    seen = set()  # over many draws every channel gets inverted sometimes, and never none when drawn
    rng = np.random.default_rng(1)
    for _ in range(40):
        o = invert_colours(x, rng, 1.0, IMAGENET_MEAN, IMAGENET_STD)
        f = tuple(c for c in range(3) if not torch.allclose(o[0, c], x[0, c]))
        assert f
        seen.update(f)
    assert seen == {0, 1, 2}


def test_scale_stroke_and_initial_strokes_are_correct_labels():
    s = scale_stroke(Stroke(FOREGROUND, 4.0, ((99.5, 49.5),)), 0.5, 0.5)
    assert s.points == ((49.5, 24.5),) and s.radius == 2.0
    assert scale_stroke(Stroke(FOREGROUND, 1.0, ((0, 0),)), 0.1, 0.1).radius == 1.0
    gt = np.zeros((48, 64), np.uint8)
    gt[10:40, 20:34] = 1
    for seed in range(10):
        strokes = initial_strokes(gt, np.random.default_rng(seed), radius=3.0)
        assert strokes[0].label == FOREGROUND and len(strokes) <= 3
        hard = hard_labels(strokes, gt.shape)
        assert (hard[hard >= 0] == gt[hard >= 0]).all()  # every stroked pixel is labelled as the ground truth
        first = np.asarray(strokes[0].points)
        assert np.ptp(first[:, 1]) >= 10  # the first stroke runs along the hand (vertical here)


def test_training_records_interactive_and_lowers_noc(trained, one_torch_thread):
    shards, best, untrained = trained
    ckpt = load_checkpoint(best)
    assert ckpt["interactive"]["encoding"] == "distance" and ckpt["interactive"]["radius"] == 2.0
    assert ckpt["model_config"]["in_channels"] == 6 and ckpt["input_size"] == [32, 48]
    val = ShardDataset(shards, "val")

    def mean_noc(path):
        factory = make_factory(path)
        nocs = []
        for i in range(len(val)):
            rec = val.raw(i)
            r = simulate(rec["image"], rec["mask"], max_strokes=8, radius=2.0, session_factory=factory)
            nocs.append(r.strokes_to(0.9))
        return float(np.mean(nocs))

    before, after = mean_noc(untrained), mean_noc(best)
    print(f"NoC@90 on 4 synthetic val frames: untrained {before:.2f}, trained {after:.2f}")
    assert after < before


def test_engine_keeps_stroke_labels_and_is_a_function_of_the_stroke_list(trained, one_torch_thread):
    shards, best, _ = trained
    rec = ShardDataset(shards, "val").raw(1)
    image = np.ascontiguousarray(np.kron(rec["image"], np.ones((2, 2, 1), np.uint8)))  # 64x96: upsampled path
    gt = np.kron(rec["mask"], np.ones((2, 2), np.uint8))
    engine = make_factory(best)(image, None, seed=3)  # unknown kw ignored
    assert engine.label == f"Model unet-g (step {load_checkpoint(best)['step']})"
    assert not engine.update([]).any()
    mask = np.zeros_like(gt)
    strokes = []
    for _ in range(4):
        s = next_stroke(mask, gt, radius=3.0)
        strokes.append(s if s is not None else Stroke(BACKGROUND, 2.0, ((1, 1),)))
        mask = engine.update(strokes)
    # an awkward extra stroke across everything: hand over background, then a background dot on top
    strokes += [Stroke(FOREGROUND, 3.0, ((5, 5), (90, 60))), Stroke(BACKGROUND, 2.0, ((40, 30),))]
    mask = engine.update(strokes)
    assert mask.dtype == np.uint8 and mask.shape == gt.shape and set(np.unique(mask)) <= {0, 1}
    hard = hard_labels(strokes, gt.shape)
    assert (mask[hard >= 0] == hard[hard >= 0]).all()
    # edits that end at the same list give the same mask: erase a middle stroke, undo, redo, a fresh engine
    engine.update(strokes[:2] + strokes[3:])
    engine.update(strokes[:3])
    assert np.array_equal(engine.update(strokes), mask)
    fresh = make_factory(best, cache_size=1)(image)
    fresh.update(strokes[:1])
    fresh.update(strokes[1:])
    assert np.array_equal(fresh.update(strokes), mask)
    # a prior is the mask before any stroke
    prior = np.zeros(gt.shape, np.float32)
    prior[:10, :10] = 0.8
    assert np.array_equal(make_factory(best)(image, prior).update([]), (prior >= 0.5).astype(np.uint8))


def test_model_grabcut_engine_keeps_stroke_labels_and_is_a_function_of_the_stroke_list(trained, one_torch_thread):
    from kbh.engines import engine_factory

    shards, best, _ = trained
    rec = ShardDataset(shards, "val").raw(2)
    image, gt = np.ascontiguousarray(rec["image"]), rec["mask"]
    factory = engine_factory("model-grabcut", checkpoint=best)  # through the registry, as the annotator does
    engine = factory(image, None)
    assert engine.label.endswith("+ GrabCut")
    strokes = [Stroke(FOREGROUND, 2.0, ((24, 16), (30, 16))), Stroke(BACKGROUND, 1.0, ((2, 2), (2, 28))),
               Stroke(FOREGROUND, 1.0, ((0, 0),))]  # the last one deliberately wrong: a hand dot on background
    for k in range(1, 4):
        mask = engine.update(strokes[:k])
        hard = hard_labels(strokes[:k], gt.shape)
        assert mask.shape == gt.shape and (mask[hard >= 0] == hard[hard >= 0]).all()
    engine.update(strokes[1:])  # erase the first
    assert np.array_equal(engine.update(strokes), mask)
    assert np.array_equal(make_hybrid_factory(best)(image).update(strokes), mask)


def test_eval_predict_and_export_refuse_an_interactive_checkpoint(trained, tmp_path, capsys):
    shards, best, _ = trained
    assert kbh_main(["eval", "--checkpoint", str(best), "--data", str(shards), "--split", "val"]) == 2
    err = capsys.readouterr().err
    assert "interactive" in err and len(err.strip().splitlines()) == 1
    assert kbh_main(["predict", str(tmp_path / "ws"), "--checkpoint", str(best), "--quiet"]) == 2
    assert "interactive" in capsys.readouterr().err


def test_make_factory_errors(trained, tmp_path):
    _, best, _ = trained
    with pytest.raises(KbhError, match="needs a checkpoint"):
        make_factory(None)
    with pytest.raises(KbhError, match="no such checkpoint"):
        make_factory(tmp_path / "missing.pt")
    plain = {k: v for k, v in load_checkpoint(best).items() if k != "interactive"}
    save_checkpoint(tmp_path / "plain.pt", plain)
    with pytest.raises(KbhError, match="not an interactive checkpoint"):
        make_factory(tmp_path / "plain.pt")
    with pytest.raises(KbhError, match="unknown option"):
        make_factory(best, brush=3)
    from kbh.engines import engine_factory

    with pytest.raises(KbhError, match="needs a checkpoint"):
        engine_factory("model")
