"""Training runs on tiny synthetic shards (32x48): files, checkpoint contents, kill + resume, non-finite loss,
and a 2-process torchrun (gloo) run whose ranks must end with identical weights."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from kbh.cli import main as kbh_main
from training.checkpoint import load_checkpoint
from tests.training.helpers import make_shards, manifest_id_of

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return make_shards(tmp_path_factory.mktemp("shards"), counts={"train": 8, "val": 3, "test": 3})


def train_args(shards, out, *extra):
    return ["train", "--data", str(shards), "--out", str(out), "--batch", "2", "--workers", "0", "--log-every", "1",
            *extra]


def read_log(run):
    return [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]


def test_train_writes_checkpoints_log_and_plots(shards, tmp_path):
    run = tmp_path / "run"
    assert kbh_main(train_args(shards, run, "--model", "rec-simple", "--steps", "4", "--eval-every", "2",
                               "--iterations", "2")) == 0
    for name in ("last.pt", "best.pt", "log.jsonl", "curves.png", "miou_per_iteration.png"):
        assert (run / name).stat().st_size > 0, name
    # checkpoints load without unpickling code
    ckpt = torch.load(run / "last.pt", weights_only=True)
    for key in ("model_config", "model", "optimizer", "scheduler", "step", "epoch", "best_miou", "manifest_id",
                "normalization", "args"):
        assert key in ckpt, key
    assert ckpt["step"] == 4 and ckpt["model_config"]["name"] == "rec-simple"
    assert ckpt["manifest_id"] == manifest_id_of(shards)
    assert ckpt["normalization"]["mean"] == pytest.approx([0.485, 0.456, 0.406])
    assert ckpt["args"]["iterations"] == 2 and "func" not in ckpt["args"]
    log = read_log(run)
    assert [r["step"] for r in log if r["kind"] == "train"] == [1, 2, 3, 4]
    evals = [r for r in log if r["kind"] == "eval"]
    assert [r["step"] for r in evals] == [2, 4]
    assert [p["iteration"] for p in evals[-1]["per_iteration"]] == [1, 2]
    best = load_checkpoint(run / "best.pt")
    assert best["best_miou"] == pytest.approx(max(r["miou"] for r in evals))
    # a second run into the same folder must not clobber it
    assert kbh_main(train_args(shards, run, "--model", "unet-g", "--steps", "2")) == 2


def test_resume_extends_and_keeps_checkpoint_model(shards, tmp_path, capsys):
    run = tmp_path / "run"
    assert kbh_main(train_args(shards, run, "--model", "unet-g", "--steps", "3")) == 0
    # --model on the command line is ignored: the checkpoint's config rebuilds the network
    assert kbh_main(train_args(shards, run, "--model", "dru4", "--steps", "6", "--resume")) == 0
    assert "ignores --model dru4" in capsys.readouterr().out
    ckpt = load_checkpoint(run / "last.pt")
    assert ckpt["step"] == 6 and ckpt["model_config"]["name"] == "unet-g"
    assert [r["step"] for r in read_log(run) if r["kind"] == "train"] == [1, 2, 3, 4, 5, 6]


def test_bad_inputs_are_one_line_errors(shards, tmp_path, capsys):
    assert kbh_main(train_args(shards, tmp_path / "a", "--model", "nope", "--steps", "1")) == 2
    assert "unknown model" in capsys.readouterr().err
    assert kbh_main(train_args(shards, tmp_path / "b", "--steps", "1", "--resume")) == 2
    assert "no such checkpoint" in capsys.readouterr().err
    assert kbh_main(train_args(tmp_path / "nodata", tmp_path / "c", "--steps", "1")) == 2
    assert "no such shard folder" in capsys.readouterr().err
    for flag in ("--paste", "--colour-shuffle", "--colour-invert"):
        run = tmp_path / flag.strip("-")
        assert kbh_main(train_args(shards, run, "--steps", "1", flag, "1.5")) == 2
        err = capsys.readouterr().err
        assert f"{flag} 1.5: must be a probability in [0, 1]" in err and len(err.strip().splitlines()) == 1
        assert not (run / "last.pt").exists()


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(shards, tmp_path):
    run = tmp_path / "run"
    # An absurd LR sends the weights to ~1e30 after one step; the next loss overflows.
    proc = subprocess.run([sys.executable, "-m", "kbh.cli", *train_args(shards, run, "--model", "unet-g", "--steps",
                           "10", "--lr", "1e30", "--save-every", "1")], env=ENV, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2
    assert re.search(r"loss is (nan|inf) at step \d+", proc.stderr), proc.stderr[-500:]
    assert "last good checkpoint" in proc.stderr
    ckpt = load_checkpoint(run / "last.pt")
    failed_at = int(re.search(r"at step (\d+)", proc.stderr)[1])
    assert ckpt["step"] == failed_at - 1
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values() if v.is_floating_point())


@pytest.mark.slow
def test_killed_run_resumes_to_the_end(shards, tmp_path):
    run = tmp_path / "run"
    steps = 150
    cmd = [sys.executable, "-m", "kbh.cli", *train_args(shards, run, "--model", "unet-g", "--steps", str(steps),
                                                         "--save-every", "3")]
    proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 90
        while not (run / "last.pt").exists() and time.time() < deadline and proc.poll() is None:
            time.sleep(0.02)
        assert proc.poll() is None, "run ended before it could be killed"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    killed_at = load_checkpoint(run / "last.pt")["step"]
    assert 0 < killed_at < steps
    resumed = subprocess.run([sys.executable, "-m", "kbh.cli", *train_args(shards, run, "--steps", str(steps),
                              "--resume")], env=ENV, capture_output=True, text=True, timeout=240)
    assert resumed.returncode == 0, resumed.stderr[-800:]
    assert f"steps {killed_at} -> {steps}" in resumed.stdout
    assert load_checkpoint(run / "last.pt")["step"] == steps
    train_steps = [r["step"] for r in read_log(run) if r["kind"] == "train"]
    assert train_steps == list(range(1, steps + 1))  # the loss curve continues without gaps or repeats


@pytest.mark.slow
def test_torchrun_two_processes_end_with_identical_weights(shards, tmp_path):
    run = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "kbh.cli",
           *train_args(shards, run, "--model", "rec-simple", "--steps", "3", "--iterations", "2", "--device", "cpu")]
    proc = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=180, cwd=ROOT)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-1500:]
    digests = dict(re.findall(r"rank (\d)/2: weights sha256 ([0-9a-f]{64})", proc.stdout + proc.stderr))
    assert set(digests) == {"0", "1"}
    assert digests["0"] == digests["1"]
    assert "2 processes" in proc.stdout
    ckpt = load_checkpoint(run / "last.pt")
    assert ckpt["step"] == 3
    # rank 0 alone writes the log: one record per step, and the validation scores cover the whole split once
    log = read_log(run)
    assert [r["step"] for r in log if r["kind"] == "train"] == [1, 2, 3]
    from training.checkpoint import model_from_checkpoint, state_dict_digest
    assert state_dict_digest(model_from_checkpoint(ckpt)) == digests["0"]
