"""A checkpoint someone sends must not be able to run code, and a broken one fails with one clear line."""

import pytest
import torch

from kbh.cli import main
from kbh.errors import KbhError
from training.checkpoint import load_checkpoint, model_from_checkpoint, save_checkpoint
from training.models import build_model

NORM = {"mean": [0.5] * 3, "std": [0.25] * 3}


class Payload:
    """Unpickling this would call os.system: weights_only loading must refuse it."""

    def __reduce__(self):
        import os

        return (os.system, ("touch /tmp/kbh_pwned_by_checkpoint",))


def test_code_in_a_checkpoint_is_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"model_config": {"name": "unet-g"}, "model": {}, "step": 0, "normalization": NORM,
                "x": Payload()}, path)
    with pytest.raises(KbhError, match="refused: the checkpoint holds objects other than tensors"):
        load_checkpoint(path)


def test_corrupt_truncated_and_foreign_checkpoints(tmp_path, capsys):
    (tmp_path / "text.pt").write_text("garbage")
    with pytest.raises(KbhError, match="not a torch.save archive"):
        load_checkpoint(tmp_path / "text.pt")
    model = build_model("unet-g")
    good = tmp_path / "good.pt"
    save_checkpoint(good, {"model_config": model.config, "model": model.state_dict(), "step": 1,
                           "normalization": NORM})
    data = good.read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(KbhError, match="cut.pt"):
        load_checkpoint(tmp_path / "cut.pt")
    torch.save({"model": {}}, tmp_path / "other.pt")
    with pytest.raises(KbhError, match="missing model_config, step, normalization"):
        load_checkpoint(tmp_path / "other.pt")
    wrong = {"model_config": {"name": "dru4"}, "model": model.state_dict(), "step": 1, "normalization": NORM}
    with pytest.raises(KbhError, match="model 'dru4' cannot be rebuilt"):
        model_from_checkpoint(wrong)
    assert main(["predict", str(tmp_path), "--checkpoint", str(tmp_path / "text.pt")]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_a_full_disk_is_one_line_naming_the_checkpoint(tmp_path):
    from tests.helpers import mounted_tmpfs

    with mounted_tmpfs(tmp_path / "disk", "64k") as disk:
        model = build_model("unet-g")
        with pytest.raises(KbhError, match=f"{disk}/best.pt: cannot write \\(No space left on device\\)"):
            save_checkpoint(disk / "best.pt", {"model": model.state_dict(), "step": 1})
        assert list(disk.iterdir()) == []  # no temporary file left
