import numpy as np
import pytest
import torch

from kbh.cli import main
from kbh.workspace import Workspace
from tests.helpers import blob_image
from training.checkpoint import save_checkpoint
from training.models import build_model
from training.predict import Predictor, binary_entropy


def test_binary_entropy_hand_computed():
    assert binary_entropy(np.full((4, 4), 0.5)) == pytest.approx(1.0)
    assert binary_entropy(np.array([0.0, 1.0])) == pytest.approx(0.0, abs=1e-4)
    # H(0.25) = 0.25*2 + 0.75*log2(4/3) = 0.8113
    assert binary_entropy(np.array([0.25, 0.75])) == pytest.approx(0.811278, abs=1e-5)


@pytest.fixture
def checkpoint(tmp_path):
    torch.manual_seed(0)
    model = build_model("rec-simple")
    path = tmp_path / "m.pt"
    save_checkpoint(path, {"model_config": model.config, "model": model.state_dict(), "step": 7,
                           "normalization": {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]},
                           "input_size": [32, 48]})
    return path


@pytest.fixture
def ws(tmp_path):
    w = Workspace.init(tmp_path / "ws")
    w.upsert_sequence("s", "p")
    for i in range(5):
        w.add_image("s", i, blob_image(seed=i)[0])
    yield w
    w.close()


def test_predict_never_touches_human_work(ws, checkpoint, capsys):
    frames = ws.frames()
    done_mask = blob_image(seed=1)[1]
    ws.save_annotation(frames[1].id, mask=done_mask, status="done", source="grabcut")
    ws.save_annotation(frames[3].id, status="in_progress")
    before = (ws.root / ws.mask_file(frames[1].id)).read_bytes()
    assert main(["predict", str(ws.root), "--checkpoint", str(checkpoint), "--quiet"]) == 0
    assert "predicted 3 frames" in capsys.readouterr().out
    statuses = [f.status for f in ws.frames()]
    assert statuses == ["prelabeled", "done", "prelabeled", "in_progress", "prelabeled"]
    assert ws.prediction(frames[1].id) is None and ws.prediction(frames[3].id) is None
    assert (ws.root / ws.mask_file(frames[1].id)).read_bytes() == before
    pred = ws.prediction(frames[0].id)
    assert pred.model == "rec-simple@7"
    prob = ws.prediction_probability(pred)
    assert prob.shape == (40, 60)
    assert pred.uncertainty == pytest.approx(binary_entropy(prob), abs=0.01)
    with pytest.raises(SystemExit) as exc:  # argparse refuses it: human work is never a prediction target
        main(["predict", str(ws.root), "--checkpoint", str(checkpoint), "--frames", "done"])
    assert exc.value.code == 2


def test_propagation_seeds_from_finished_then_own_predictions(ws, checkpoint):
    frames = ws.frames()
    ws.save_annotation(frames[1].id, mask=blob_image(seed=1)[1], status="done", source="grabcut")
    assert main(["predict", str(ws.root), "--checkpoint", str(checkpoint), "--propagate", "--quiet"]) == 0
    models = [ws.prediction(f.id).model if ws.prediction(f.id) else None for f in ws.frames()]
    # frame 0 has no previous frame; 2 follows the finished frame 1; 3 and 4 follow this run's predictions
    assert models == ["rec-simple@7", None, "rec-simple@7/propagated", "rec-simple@7/propagated",
                      "rec-simple@7/propagated"]


def test_seed_changes_the_prediction(checkpoint):
    p = Predictor.from_checkpoint(checkpoint)
    assert p.size == (32, 48)
    img, mask = blob_image()
    unseeded = p.probabilities(img, 1)
    seeded = p.probabilities(img, 1, seed=mask.astype(np.float32))
    assert unseeded.shape == seeded.shape == (40, 60)
    assert np.abs(unseeded - seeded).max() > 1e-4
    np.testing.assert_array_equal(p.probabilities(img, 1), unseeded)  # deterministic
