"""The DRIVE protocol of `kbh bench drive` and the recipe options it relies on."""

from __future__ import annotations

import json

import pytest

from kbh.errors import KbhError
from kbh.manifest import read_manifest


def test_committed_drive_manifest_is_the_protocol():
    from benchmarks.bench_drive import MANIFEST, drive_manifest

    built, committed = drive_manifest(), read_manifest(MANIFEST)
    assert committed["manifest_id"] == built["manifest_id"]  # regenerating gives the committed file
    persons = {k: set(v["persons"]) for k, v in committed["splits"].items()}
    assert persons["test"] == {f"{n:02d}" for n in range(1, 21)}  # the 20 test images, all of them
    assert len(persons["train"]) == 16 and len(persons["val"]) == 4
    assert persons["train"] | persons["val"] == {f"{n:02d}" for n in range(21, 41)}
    assert not (persons["train"] & persons["val"]) and not (persons["test"] & (persons["train"] | persons["val"]))


def test_model_args_parse_numbers_and_words():
    pytest.importorskip("torch")
    from training.train import parse_model_args

    assert parse_model_args(["init=zeros", "hidden=16", "x=0.5", "flag=true"]) == \
        {"init": "zeros", "hidden": 16, "x": 0.5, "flag": True}
    with pytest.raises(KbhError, match="expected KEY=VALUE"):
        parse_model_args(["zeros"])


def test_iteration_study_table_reports_the_change_from_t1():
    from benchmarks.iteration_study import table

    rows = [{"variant": "base", "changes": [], "train_seconds": 10, "val_miou": [0.70, 0.72, 0.69, 0.68, 0.60]}]
    text = table(rows)
    assert "| base | (the recipe before the study: alpha 0.4, lr 0.01) | 0.7000 | 0.7200 | 0.6900 | 0.6800 | 0.6000 | -0.0100 | 2 | 10 |" in text
    json.dumps(rows)
