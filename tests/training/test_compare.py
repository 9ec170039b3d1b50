"""`kbh compare`: the choice rule by hand, and a tiny end-to-end run."""

import json

from kbh.cli import main as kbh_main
from training.compare import choose
from tests.training.helpers import make_shards


def test_choice_is_the_best_or_a_faster_one_within_tolerance():
    rows = [{"model": "sru0", "val_miou": 0.900, "fps": 10.0}, {"model": "unet-g", "val_miou": 0.897, "fps": 60.0},
            {"model": "dru4", "val_miou": 0.880, "fps": 90.0}]
    assert choose(rows, tolerance=0.005)["model"] == "unet-g"  # 0.003 below the best, 6x faster
    assert choose(rows, tolerance=0.001)["model"] == "sru0"
    assert choose(rows, tolerance=0.05)["model"] == "dru4"


def test_compare_trains_each_candidate_and_names_one(tmp_path, capsys):
    shards = make_shards(tmp_path / "shards", counts={"train": 6, "val": 3, "test": 2})
    assert kbh_main(["compare", "--data", str(shards), "--out", str(tmp_path / "cmp"), "--models", "unet-b,rec-simple",
                     "--steps", "3", "--batch", "2", "--iterations", "2"]) == 0
    report = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    assert [r["model"] for r in report["rows"]] == ["unet-b", "rec-simple"]
    assert report["choice"] in ("unet-b", "rec-simple")
    assert len(report["rows"][1]["val_miou_per_t"]) == 2 and len(report["rows"][0]["val_miou_per_t"]) == 1
    assert f"kbh predict WS --checkpoint {tmp_path / 'cmp' / report['choice'] / 'best.pt'}" in capsys.readouterr().out
    assert kbh_main(["compare", "--data", str(shards), "--out", str(tmp_path / "x"), "--models", "unet-b"]) == 2
    assert "give at least two candidates" in capsys.readouterr().err
