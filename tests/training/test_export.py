"""ONNX export: parity with torch for both graphs, the streaming state plumbing, the CLI and its errors."""

from __future__ import annotations

import io

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

import numpy as np  # noqa: E402

from kbh.cli import main  # noqa: E402
from training.onnx_export import (PARITY_TOLERANCE, export_onnx, initial_state_from_metadata, ort_session,  # noqa: E402
                             parity)
from training.models import build_model  # noqa: E402


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _small(name):
    torch.manual_seed(0)
    return build_model(name, base_channels=4)


@pytest.mark.parametrize("name", ["dru4", "rec-simple", "canvas", "unet-b"])
@pytest.mark.parametrize("mode", ["all", "step"])
def test_parity_with_torch(name, mode):
    model = _small(name)
    buffer = io.BytesIO()
    info = export_onnx(model, buffer, mode=mode, height=37, width=53)
    session = ort_session(buffer.getvalue(), threads=1)
    assert parity(info, session) < PARITY_TOLERANCE


def test_all_mode_returns_every_iteration():
    model = _small("sru3")
    buffer = io.BytesIO()
    export_onnx(model, buffer, mode="all", iterations=4, height=32, width=48)
    session = ort_session(buffer.getvalue(), threads=1)
    x = np.random.default_rng(1).standard_normal((1, 3, 32, 48)).astype(np.float32)
    got = session.run(["logits"], {"image": x})[0]
    with torch.no_grad():
        expected = torch.stack(model.eval()(torch.from_numpy(x), iterations=4)).numpy()
    assert got.shape == (4, 1, 2, 32, 48)
    assert np.abs(got - expected).max() < PARITY_TOLERANCE  # also on an input other than the export example


def test_step_mode_streams_like_forward():
    # chaining the exported step from the metadata's initial state reproduces model(x, iterations=3)
    model = _small("dru4").eval()
    buffer = io.BytesIO()
    info = export_onnx(model, buffer, mode="step", height=32, width=32)
    session = ort_session(buffer.getvalue(), threads=1)
    state = initial_state_from_metadata(session)
    assert list(state) == ["state0_in", "state1_in"]
    assert state["state0_in"].shape == (1, 2, 32, 32) and np.all(state["state0_in"] == 1.0)  # s0 = ones
    assert state["state1_in"].shape == (1, 32, 2, 2)  # h0 at 1/16 resolution, 32 channels
    x = np.random.default_rng(2).standard_normal((1, 3, 32, 32)).astype(np.float32)
    with torch.no_grad():
        expected = model(torch.from_numpy(x), iterations=3)
    for want in expected:
        got = session.run(info["outputs"], {"image": x, **state})
        assert np.abs(got[0] - want.numpy()).max() < PARITY_TOLERANCE
        state = dict(zip(info["inputs"][1:], got[1:]))


def test_bad_mode():
    with pytest.raises(ValueError, match="mode"):
        export_onnx(_small("dru4"), io.BytesIO(), mode="half")


def _checkpoint(path, name="sru4"):
    model = _small(name)
    torch.save({"model_config": model.config, "model": model.state_dict(), "step": 0,
                "normalization": {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}}, path)


@pytest.mark.parametrize("mode", ["all", "step"])
def test_cli_export(tmp_path, capsys, mode):
    _checkpoint(tmp_path / "best.pt")
    out = tmp_path / "model.onnx"
    rc = main(["export-model", "--checkpoint", str(tmp_path / "best.pt"), "--onnx", str(out), "--mode", mode,
               "--size", "32x48", "--threads", "1"])
    assert rc == 0
    assert out.is_file()
    text = capsys.readouterr().out
    assert "parity with torch: max abs difference" in text
    session = ort_session(out, threads=1)
    meta = session.get_modelmeta().custom_metadata_map
    assert meta["kbh_mode"] == mode and '"name": "sru4"' in meta["kbh_model_config"]


def test_cli_rejects_a_file_that_is_not_a_checkpoint(tmp_path, capsys):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    rc = main(["export-model", "--checkpoint", str(bad), "--onnx", str(tmp_path / "m.onnx")])
    assert rc == 2
    assert "bad.pt" in capsys.readouterr().err
    assert not (tmp_path / "m.onnx").exists()
