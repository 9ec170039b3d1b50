"""The engine switch in the annotator: `kbh annotate --engine/--checkpoint`, the Engine menu (GrabCut / Model…),
the worker dropping the old engines, the open frame's strokes run again by the new engine, errors that keep the
old engine. The "model" engine is a stand-in here (the real one lives in `training`, reached only through
`kbh.engines.engine_factory`), injected by replacing that function."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

import kbh.engines
from annotator.session import FrameSession
from kbh.errors import KbhError
from kbh.strokes import BACKGROUND, FOREGROUND, Stroke, rasterize
from tests.annotator.helpers import draw, fake_engine, make_workspace

MODEL_LABEL = "Model fake (step 7)"
GOOD, BAD = b"good checkpoint", b"not a checkpoint"


def fake_model_engine(image, prior=None):
    """Stand-in for the trained model: the left half of the frame, then the strokes as hard labels."""

    class Engine:
        label = MODEL_LABEL

        def update(self, strokes):
            m = np.zeros(image.shape[:2], np.uint8)
            m[:, : image.shape[1] // 2] = 1
            for s in strokes:
                m[rasterize(s, m.shape)] = s.label
            return m

    return Engine()


@pytest.fixture
def fake_registry(monkeypatch):
    """`kbh.engines.engine_factory` with a "model" engine that accepts only files holding GOOD; records calls."""
    real = kbh.engines.engine_factory
    calls = []

    def engine_factory(name="grabcut", checkpoint=None, **options):
        calls.append((name, checkpoint))
        if name not in ("model", "model-grabcut"):
            return real(name, checkpoint, **options)
        if checkpoint is None:
            raise KbhError("the model engine needs a checkpoint")
        if not Path(checkpoint).is_file():  # as training.checkpoint.load_checkpoint says it
            raise KbhError(f"{checkpoint}: no such checkpoint")
        if Path(checkpoint).read_bytes() != GOOD:
            raise KbhError(f"{checkpoint}: not a kbh checkpoint")
        return fake_model_engine

    monkeypatch.setattr(kbh.engines, "engine_factory", engine_factory)
    return calls


@pytest.fixture
def checkpoints(tmp_path):
    good, bad = tmp_path / "good.pt", tmp_path / "bad.pt"
    good.write_bytes(GOOD)
    bad.write_bytes(BAD)
    return good, bad


# -- the session: a re-run of the same strokes is an undo step whose mask comes from the engine --------------------
def test_session_rerun_asks_the_engine_and_undoes_to_the_old_mask():
    image = np.zeros((20, 30, 3), np.uint8)
    image[5:15, 10:20] = 200
    s = FrameSession(1, np.zeros((20, 30), np.uint8))
    assert s.rerun() is None  # nothing to run
    s.add_stroke(Stroke(FOREGROUND, 2.0, ((12, 10), (16, 10))))
    assert s.apply_result(s.generation, fake_engine(image).update(s.strokes))
    old = s.mask.copy()
    gen = s.generation
    change = s.rerun("Run strokes with Model")
    assert change is not None and s.generation == gen + 1 and s.needs_engine and not s.settled
    assert not s.apply_result(gen, old)  # a result of the old engine for the old request is stale
    new = fake_model_engine(image).update(s.strokes)
    assert s.apply_result(s.generation, new) and s.settled and np.array_equal(s.mask, new)
    assert s.strokes == [Stroke(FOREGROUND, 2.0, ((12, 10), (16, 10)))]  # the strokes stay
    s.undo()
    assert np.array_equal(s.mask, old) and s.settled
    s.redo()
    assert np.array_equal(s.mask, new) and s.settled and not s.needs_engine


# -- the worker ----------------------------------------------------------------------------------------------------
def test_worker_drops_its_engines_when_the_factory_changes(qtbot):
    from annotator.worker import GrabCutWorker

    built = []

    def counting(tag):
        def factory(image, prior=None):
            built.append(tag)
            return fake_engine(image)

        return factory

    worker = GrabCutWorker(counting("a"))
    worker.start()
    try:
        image = np.zeros((10, 10, 3), np.uint8)
        stroke = Stroke(FOREGROUND, 1.0, ((5, 5),))
        for gen in (1, 2):  # one engine per frame, kept between jobs
            with qtbot.waitSignal(worker.resultReady, timeout=5000):
                worker.submit(7, gen, [stroke], image, None)
        assert built == ["a"]
        epoch = worker.set_engine_factory(counting("b"))
        assert epoch == worker.epoch
        with qtbot.waitSignal(worker.engineBuilt, timeout=5000) as built_signal:
            with qtbot.waitSignal(worker.resultReady, timeout=5000):
                worker.submit(7, 3, [stroke], image, None)
        assert built == ["a", "b"] and built_signal.args[0] == epoch
    finally:
        worker.stop()


# -- the window ----------------------------------------------------------------------------------------------------
@pytest.fixture
def window(open_window, ws_path):
    """Factory: a shown window on the tiny workspace (tests/annotator/conftest.py); `engine` or `engine_factory`
    as the window takes them."""
    return lambda **kw: open_window(ws_path, **kw)


def settle(qtbot, win):
    qtbot.waitUntil(win.all_saved, timeout=15000)


def test_engine_menu_switches_to_the_model_and_reruns_the_open_frame(qtbot, window, fake_registry, checkpoints):
    from PySide6.QtCore import Qt

    good, _ = checkpoints
    win = window()
    s = win.session
    image = win.ws.image(s.frame_id)
    assert win.engine_label.text() == "Engine: GrabCut" and win.act_engine_grabcut.isChecked()
    assert win.busy_label.text() == "idle"
    draw(qtbot, win, [(30, 28), (40, 30)])
    settle(qtbot, win)
    grabcut_mask = s.mask.copy()
    assert np.array_equal(grabcut_mask, fake_engine(image).update(s.strokes))
    # Engine > Model…: the chosen checkpoint is loaded through kbh.engines, the open frame is run again
    win.choose_checkpoint = lambda: str(good)
    win.act_engine_model.trigger()
    assert fake_registry[-1] == ("model", str(good))
    assert win.act_engine_model.isChecked() and not win.act_engine_grabcut.isChecked()
    assert win.engine.name == "model" and win.engine.checkpoint == str(good)
    settle(qtbot, win)
    expected = fake_model_engine(image).update(s.strokes)
    assert np.array_equal(s.mask, expected) and not np.array_equal(expected, grabcut_mask)
    assert np.array_equal((win.canvas._overlay_values > 0).astype(np.uint8), expected)  # on screen
    assert np.array_equal(win.ws.mask(s.frame_id), expected)  # and saved
    qtbot.waitUntil(lambda: win.engine_label.text() == f"Engine: {MODEL_LABEL}")  # the engine's own label
    assert win.settings.value("engine/checkpoint") == str(good)
    assert win.session.undo_text.startswith("Run strokes with")
    # the next stroke goes to the model too; undo across the switch shows GrabCut's mask again
    draw(qtbot, win, [(60, 10), (70, 10)], button=Qt.MouseButton.RightButton)
    settle(qtbot, win)
    assert np.array_equal(s.mask, fake_model_engine(image).update(s.strokes))
    win.act_undo.trigger()
    win.act_undo.trigger()
    settle(qtbot, win)
    assert np.array_equal(s.mask, grabcut_mask) and len(s.strokes) == 1
    win.act_redo.trigger()
    settle(qtbot, win)
    assert np.array_equal(s.mask, expected)
    # back to GrabCut (the real one, as the app starts without a model)
    win.act_engine_grabcut.trigger()
    assert win.engine_label.text() == "Engine: GrabCut" and win.act_engine_grabcut.isChecked()
    assert fake_registry[-1] == ("grabcut", None)
    settle(qtbot, win)
    assert s.settled and win.session.undo_text == "Run strokes with GrabCut"
    assert s.mask[rasterize(s.strokes[0], s.mask.shape)].all()  # a hard label, whichever engine


def test_a_failing_model_keeps_the_old_engine_and_says_why(qtbot, window, fake_registry, checkpoints, tmp_path):
    _, bad = checkpoints
    win = window()
    s = win.session
    draw(qtbot, win, [(30, 28), (40, 30)])
    settle(qtbot, win)
    mask, n_undo, factory = s.mask.copy(), win.session.undo_count, win.worker.engine_factory
    epoch = win.worker.epoch
    for path, words in ((bad, "not a kbh checkpoint"), (tmp_path / "missing.pt", "no such checkpoint")):
        win.choose_checkpoint = lambda p=path: str(p)
        win.act_engine_model.trigger()
        assert win.engine.name == "grabcut" and win.act_engine_grabcut.isChecked()
        assert not win.act_engine_model.isChecked()
        assert win.engine_label.text() == "Engine: GrabCut"
        assert words in win.engine_error and "\n" not in win.engine_error
        assert words in win.statusBar().currentMessage()
        assert win.engine_error_box.isVisible() and words in win.engine_error_box.text()
        win.engine_error_box.close()
    assert win.worker.engine_factory is factory and win.worker.epoch == epoch  # the worker never switched
    assert win.session.undo_count == n_undo and np.array_equal(s.mask, mask) and s.settled
    assert win.settings.value("engine/checkpoint") is None  # only a checkpoint that loaded is remembered
    # a cancelled file dialog changes nothing either
    win.choose_checkpoint = lambda: None
    win.act_engine_model.trigger()
    assert win.act_engine_grabcut.isChecked() and win.engine.name == "grabcut"
    # work goes on with the old engine
    draw(qtbot, win, [(10, 50)])
    settle(qtbot, win)
    assert np.array_equal(s.mask, fake_engine(win.ws.image(s.frame_id)).update(s.strokes))


def test_an_unexpected_factory_error_is_one_line_too(qtbot, window, monkeypatch, checkpoints):
    good, _ = checkpoints

    def broken(name="grabcut", checkpoint=None, **options):
        raise RuntimeError("CUDA out of memory\nmore details")

    monkeypatch.setattr(kbh.engines, "engine_factory", broken)
    win = window()
    assert not win.set_engine("model", good)
    assert win.engine_error == "RuntimeError: CUDA out of memory" and win.engine.name == "grabcut"
    win.engine_error_box.close()


@pytest.mark.parametrize("engine", ["grabcut", "model"])
def test_stroke_pixels_keep_their_label_in_the_mask_shown(qtbot, window, fake_registry, checkpoints, engine):
    """GrabCut is the real engine; the model a stand-in (its own hard-label test belongs to `training`)."""
    from PySide6.QtCore import Qt

    from annotator.engines import build_engine

    pytest.importorskip("kbh.grabcut")
    good, _ = checkpoints
    win = window(engine=build_engine(engine, good if engine == "model" else None))
    assert win.engine.name == engine
    s = win.session
    win.set_radius(2)
    draw(qtbot, win, [(8, 8), (20, 12)])  # foreground on the dark background
    settle(qtbot, win)
    draw(qtbot, win, [(30, 30), (45, 30)], button=Qt.MouseButton.RightButton)  # background on the bright blob
    settle(qtbot, win)
    draw(qtbot, win, [(12, 4), (12, 16)], button=Qt.MouseButton.RightButton)  # crosses the first: last one wins
    settle(qtbot, win)
    labels = np.full(s.mask.shape, -1, np.int16)
    for st in s.strokes:
        labels[rasterize(st, s.mask.shape)] = st.label
    assert [st.label for st in s.strokes] == [FOREGROUND, BACKGROUND, BACKGROUND] and (labels == 1).any()
    qtbot.waitUntil(lambda: win.canvas.painted_serial == win.canvas.mask_serial)  # the newest mask is painted
    shown = (win.canvas._overlay_values > 0).astype(np.int16)
    stroked = labels >= 0
    assert np.array_equal(shown[stroked], labels[stroked]), engine
    assert np.array_equal(s.mask[stroked], labels[stroked]) and np.array_equal(shown, s.mask)


def test_help_names_the_engines(qtbot, window):
    win = window()
    win.show_help()
    from PySide6.QtWidgets import QLabel

    text = " ".join(lbl.text() for lbl in win.help_dialog.findChildren(QLabel))
    assert "Engine" in text and "GrabCut" in text and "Model" in text
    win.help_dialog.close()
    assert [a.text() for a in win.engine_menu.actions()] == ["GrabCut", "Model…", "Model + GrabCut…"]
    assert win.engine_group.isExclusive()


# -- the command line ----------------------------------------------------------------------------------------------
@pytest.fixture
def no_window(monkeypatch):
    """Any attempt to open the window fails the test: errors must come before it."""
    import annotator.window

    class NoWindow:
        def __init__(self, *a, **kw):
            raise AssertionError("a window was opened")

    monkeypatch.setattr(annotator.window, "AnnotatorWindow", NoWindow)


@pytest.mark.parametrize("args, words", [
    (["--engine", "model"], "needs a checkpoint"),
    (["--engine", "nope"], "unknown engine 'nope'"),
    (["--engine", "grabcut", "--checkpoint", "x.pt"], "takes no checkpoint"),
    (["--engine", "model", "--checkpoint", "{tmp}/missing.pt"], "no such checkpoint"),
])
def test_annotate_command_rejects_bad_engines_before_any_window(tmp_path, capsys, no_window, args, words):
    from kbh.cli import main

    make_workspace(tmp_path / "ws").close()
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    assert main(["annotate", str(tmp_path / "ws"), *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("kbh: error: ") and words in err and len(err.strip().splitlines()) == 1, err


def test_annotate_command_rejects_a_bad_checkpoint(tmp_path, capsys, no_window, checkpoints, fake_registry):
    from kbh.cli import main

    _, bad = checkpoints
    make_workspace(tmp_path / "ws").close()
    assert main(["annotate", str(tmp_path / "ws"), "--engine", "model", "--checkpoint", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err == f"kbh: error: {bad}: not a kbh checkpoint\n"


def test_annotate_command_with_the_real_registry_and_a_foreign_file(tmp_path, capsys, no_window, checkpoints):
    """Whatever `training` provides (or not yet), a file that is no checkpoint is a one-line error."""
    from kbh.cli import main

    _, bad = checkpoints
    make_workspace(tmp_path / "ws").close()
    assert main(["annotate", str(tmp_path / "ws"), "--engine", "model", "--checkpoint", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("kbh: error: ") and len(err.strip().splitlines()) == 1, err


def test_annotate_command_hands_the_engine_to_the_window(tmp_path, monkeypatch, fake_registry, checkpoints):
    import annotator.window
    from kbh.cli import main

    good, _ = checkpoints
    make_workspace(tmp_path / "ws").close()
    seen = {}

    class Stop(Exception):
        pass

    class RecordingWindow:
        def __init__(self, ws, annotator=None, engine=None, **kw):
            seen["engine"] = engine
            raise Stop

    monkeypatch.setattr(annotator.window, "AnnotatorWindow", RecordingWindow)
    with pytest.raises(Stop):
        main(["annotate", str(tmp_path / "ws"), "--engine", "model", "--checkpoint", str(good)])
    e = seen["engine"]
    assert (e.name, e.checkpoint, e.factory) == ("model", str(good), fake_model_engine)
    with pytest.raises(Stop):
        main(["annotate", str(tmp_path / "ws")])  # GrabCut when no model is given
    assert seen["engine"].name == "grabcut" and seen["engine"].label == "GrabCut"


# -- the real model engine, reached only through kbh.engines -------------------------------------------------------
def test_annotator_never_imports_training():
    root = Path(__file__).resolve().parents[2] / "annotator"
    for path in root.glob("*.py"):
        assert not re.search(r"^\s*(from|import)\s+training\b", path.read_text(), re.M), path.name


@pytest.mark.slow
def test_the_trained_model_engine_in_the_window(qtbot, window, tmp_path, one_torch_thread):
    """A tiny interactive checkpoint (`kbh train --interactive`, 2 steps): the menu's switch loads it through
    kbh.engines, the status bar takes the engine's own label, and stroke pixels keep their labels."""
    pytest.importorskip("training.interactive_engine")
    from kbh.cli import main
    from tests.training.helpers import make_shards

    shards = make_shards(tmp_path / "shards")
    assert main(["train", "--model", "dru4", "--data", str(shards), "--out", str(tmp_path / "run"), "--steps", "2",
                 "--batch", "2", "--interactive", "--device", "cpu", "--workers", "0"]) == 0
    best = tmp_path / "run" / "best.pt"
    win = window()
    s = win.session
    win.set_radius(2)
    draw(qtbot, win, [(30, 28), (40, 30)])
    settle(qtbot, win)
    win.choose_checkpoint = lambda: str(best)
    win.act_engine_model.trigger()
    assert win.engine.name == "model" and win.engine_error is None
    settle(qtbot, win)
    qtbot.waitUntil(lambda: re.fullmatch(r"Engine: Model dru4 \(step \d+\)", win.engine_label.text()) is not None)
    from PySide6.QtCore import Qt

    draw(qtbot, win, [(60, 10), (70, 10)], button=Qt.MouseButton.RightButton)
    settle(qtbot, win)
    for st in s.strokes:
        assert (s.mask[rasterize(st, s.mask.shape)] == st.label).all()
    assert np.array_equal((win.canvas._overlay_values > 0).astype(np.uint8), s.mask)


def test_engine_menu_offers_model_plus_grabcut(qtbot, window, fake_registry, checkpoints):
    good, _ = checkpoints
    win = window()
    win.choose_checkpoint = lambda: str(good)
    win.act_engine_hybrid.trigger()
    assert fake_registry[-1] == ("model-grabcut", str(good))
    assert win.engine.name == "model-grabcut" and win.act_engine_hybrid.isChecked()
    assert not win.act_engine_model.isChecked() and not win.act_engine_grabcut.isChecked()
    win.act_engine_grabcut.trigger()
    assert win.engine.name == "grabcut" and win.act_engine_grabcut.isChecked()
