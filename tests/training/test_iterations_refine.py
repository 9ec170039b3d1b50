"""The anytime claim on a small synthetic set: with the default recipe (docs/training.md, "Iterations that
refine") a recurrent model's validation mIoU at t = 3 is not below its t = 1. The model must also have learned
the task (t = 1 well above chance), so an untrained or collapsed model, whose iterations are all equal, fails."""

import json

import pytest

from kbh.cli import main as kbh_main
from tests.training.helpers import make_shards

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("model", ["dru4"])
def test_later_iterations_are_not_worse_than_the_first(model, tmp_path):
    shards = make_shards(tmp_path / "shards", counts={"train": 32, "val": 12, "test": 2}, size=(32, 48), seed=3)
    run = tmp_path / "run"
    assert kbh_main(["train", "--model", model, "--data", str(shards), "--out", str(run), "--steps", "80",
                     "--batch", "8", "--lr", "0.05", "--workers", "0", "--seed", "0", "--eval-every", "80"]) == 0
    report = tmp_path / "val.json"
    assert kbh_main(["eval", "--checkpoint", str(run / "last.pt"), "--data", str(shards), "--split", "val",
                     "--iterations", "3", "--json", str(report)]) == 0
    miou = [r["miou"] for r in json.loads(report.read_text())["per_iteration"]]
    assert miou[0] > 0.75, f"the model did not learn the task: val mIoU t=1..3 {miou}"
    assert miou[2] >= miou[0], f"iterating made it worse: val mIoU t=1..3 {miou}"
