import json

import numpy as np
import pytest
import torch

from kbh.cli import main as kbh_main
from training.checkpoint import save_checkpoint
from training.data import IMAGENET_MEAN, IMAGENET_STD, ShardDataset
from training.evaluate import evaluate, score_dataset
from training.inference import predict_probs
from training.metrics import scores_from_confusion
from training.models import build_model
from tests.training.helpers import make_shards


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return make_shards(tmp_path_factory.mktemp("shards"), counts={"train": 2, "val": 3, "test": 4}, seed=5)


def make_checkpoint(path, name, iterations=3):
    torch.manual_seed(0)
    model = build_model(name)
    save_checkpoint(path, {"model_config": dict(model.config), "model": model.state_dict(), "step": 7, "epoch": 0,
                           "best_miou": 0.5, "manifest_id": "testmanifest0001", "optimizer": {}, "scheduler": {},
                           "normalization": {"mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)},
                           "args": {"iterations": iterations}})
    return path


class RedThreshold(torch.nn.Module):
    """Stub: hand wherever the normalised red channel exceeds 0.5; one output per iteration if recurrent."""

    def __init__(self, recurrent=False):
        super().__init__()
        self.recurrent = recurrent

    def iterations_to_run(self, iterations=None):
        return (iterations or 1) if self.recurrent else 1

    def forward(self, x, iterations=None, s0=None):
        hand = (x[:, :1] > 0.5).float() * 4 - 2
        return [torch.cat([-hand, hand], 1) for _ in range(self.iterations_to_run(iterations))]


def expected_confusion(ds):
    cm = np.zeros((2, 2), np.int64)
    for i in range(len(ds)):
        item = ds[i]
        pred = (item["image"][0] > 0.5).numpy().astype(int)
        gt = item["mask"].numpy()
        for a in (0, 1):
            for b in (0, 1):
                cm[a, b] += np.sum((gt == a) & (pred == b))
    return cm


def test_scores_over_the_whole_split_match_hand_count(shards):
    ds = ShardDataset(shards, "test")
    scorer = score_dataset(RedThreshold(recurrent=True), ds, 2, "cpu", batch=3)
    cm = expected_confusion(ds)
    assert np.array_equal(scorer.confusion[0].numpy(), cm)
    assert np.array_equal(scorer.confusion[1].numpy(), cm)
    res = scorer.results()
    assert res[0]["miou"] == pytest.approx(scores_from_confusion(cm)["miou"])
    assert 0 <= res[0]["bep"] <= 1


def test_scorer_is_fresh_for_each_split(shards):
    model = RedThreshold()
    val, test = ShardDataset(shards, "val"), ShardDataset(shards, "test")
    score_dataset(model, val, 1, "cpu")
    after_val = score_dataset(model, test, 1, "cpu").confusion
    alone = score_dataset(model, test, 1, "cpu").confusion
    assert torch.equal(after_val, alone)
    assert after_val.sum().item() == len(test) * 32 * 48


def test_flip_averaging_is_mirror_consistent():
    torch.manual_seed(0)
    model = build_model("rec-simple").eval()
    x = torch.randn(1, 3, 16, 24)
    with torch.no_grad():
        a = predict_probs(model, x, 2, flip=True)
        b = predict_probs(model, x.flip(-1), 2, flip=True)
    assert len(a) == 2
    assert torch.allclose(a[-1], b[-1].flip(-1), atol=1e-5)


def test_eval_cli_json_table_and_samples(shards, tmp_path, capsys):
    ckpt = make_checkpoint(tmp_path / "rec.pt", "rec-simple", iterations=2)
    out_json, samples = tmp_path / "e.json", tmp_path / "s.png"
    assert kbh_main(["eval", "--checkpoint", str(ckpt), "--data", str(shards), "--split", "test", "--iterations", "4",
                     "--flip", "--json", str(out_json), "--samples", str(samples), "--sample-count", "2"]) == 0
    report = json.loads(out_json.read_text())
    assert report["model"] == "rec-simple" and report["split"] == "test" and report["checkpoint"] == str(ckpt)
    assert report["trained_iterations"] == 2 and report["flip"] is True and report["frames"] == 4
    per = report["per_iteration"]
    assert [r["iteration"] for r in per] == [1, 2, 3, 4]
    for r in per:
        for key in ("miou", "mean_recall", "mean_precision", "mean_f1", "bep"):
            assert r[key] is None or 0 <= r[key] <= 1, key
    assert samples.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    out = capsys.readouterr().out
    assert "mIoU" in out and "beyond the iterations" in out


def test_single_pass_model_reports_one_iteration(shards, tmp_path):
    ckpt = make_checkpoint(tmp_path / "unet.pt", "unet-g", iterations=1)
    report, _, _ = evaluate(ckpt, shards, "val", iterations=3)
    assert len(report["per_iteration"]) == 1 and report["frames"] == 3


def test_bad_checkpoint_is_a_clear_error(shards, tmp_path, capsys):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    assert kbh_main(["eval", "--checkpoint", str(bad), "--data", str(shards)]) == 2
    assert "bad.pt: not a kbh checkpoint (not a torch.save archive" in capsys.readouterr().err
    # a pickle that would run code is refused by weights_only loading
    torch.save({"model_config": {"name": "unet-g"}, "model": {}, "step": 0, "normalization": {},
                "evil": RedThreshold()}, bad)
    assert kbh_main(["eval", "--checkpoint", str(bad), "--data", str(shards)]) == 2
    assert "bad.pt: refused: the checkpoint holds objects other than tensors" in capsys.readouterr().err
