"""`kbh bench speed` plumbing on tiny inputs (no timing is asserted: figures go to benchmarks/RESULTS.md)."""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")

from kbh.cli import main  # noqa: E402
from kbh.errors import KbhError  # noqa: E402
from benchmarks import bench_speed  # noqa: E402


def test_timing_child_variants_agree():
    torch.set_num_threads(1)
    res = bench_speed.child_timing({"model": "unet-b", "iterations": [1], "size": [32, 48], "threads": 1,
                                    "variants": ["eager", "optimised", "onnxruntime"], "rounds": 1,
                                    "min_seconds": 0.01})["timing"]
    assert {r["variant"] for r in res} == {"eager", "optimised", "onnxruntime"}
    for r in res:
        assert r["fps"] > 0
        assert r["max_abs_diff_to_eager"] < 1e-3  # BN folding, channels_last and ORT keep the logits


@pytest.mark.slow  # three child processes, each importing torch
def test_cli_end_to_end_writes_table_json_and_plot(tmp_path, capsys):
    ev = tmp_path / "eval.json"
    ev.write_text(json.dumps({"model": "sru4", "per_iteration": [{"iteration": 1, "miou": 0.7},
                                                                 {"iteration": 2, "miou": 0.75}]}))
    rc = main(["bench", "speed", "--models", "sru4", "--iterations", "1,2", "--size", "32x32", "--threads", "1",
               "--rounds", "1", "--min-seconds", "0.01", "--variants", "eager,optimised", "--eval", str(ev),
               "--out", str(tmp_path / "out")])
    assert rc == 0
    text = capsys.readouterr().out
    assert "| sru4 | 325,266 | 2 |" in text
    result = json.loads((tmp_path / "out" / "speed.json").read_text())
    assert [r["iterations"] for r in result["rows"]] == [1, 2]
    assert result["rows"][-1]["mem_eager_mb"] >= 0
    assert (tmp_path / "out" / "accuracy_vs_speed.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bad_eval_file_and_model(tmp_path, capsys):
    bad = tmp_path / "e.json"
    bad.write_text("{}")
    with pytest.raises(KbhError, match="e.json"):
        bench_speed.load_eval(bad)
    assert main(["bench", "speed", "--models", "nope"]) == 2
    assert "unknown model" in capsys.readouterr().err
