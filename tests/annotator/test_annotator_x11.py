"""The real app on a real X display (issue 10): `kbh annotate` under Xvfb with Qt's xcb platform, a stroke drawn
with real X mouse events (xdotool), a screenshot from the X server, and a clean exit by the Quit shortcut.

`make install` brings Xvfb, xdotool and the xcb libraries; where they are absent (a machine set up by hand)
the test is skipped with the reason."""

import os
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest

from kbh.workspace import Workspace
from tests.helpers import make_ws

pytestmark = pytest.mark.skipif(not (shutil.which("Xvfb") and shutil.which("xdotool")),
                                reason="Xvfb and xdotool are not installed (make install brings them)")

GRAB = ("import sys; from PySide6.QtGui import QGuiApplication; app = QGuiApplication([]); "
        "sys.exit(0 if app.primaryScreen().grabWindow(0).save(sys.argv[1]) else 1)")


@pytest.fixture
def display(tmp_path):
    r, w = os.pipe()
    xvfb = subprocess.Popen(["Xvfb", "-displayfd", str(w), "-screen", "0", "1400x900x24", "-nolisten", "tcp"],
                            pass_fds=(w,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(w)
    number = os.read(r, 16).decode().strip()  # r stays open: Xvfb may still write to it (SIGPIPE would kill it)
    env = {**os.environ, "DISPLAY": f":{number}"}
    wait_for(lambda: subprocess.run(["xdotool", "getdisplaygeometry"], env=env, capture_output=True).returncode == 0,
             30, "Xvfb to accept connections")
    yield f":{number}"
    xvfb.terminate()
    xvfb.wait(10)
    os.close(r)


def wait_for(cond, timeout_s, what):
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if value := cond():
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def xdo(env, *args, check=True) -> str:
    return subprocess.run(["xdotool", *args], env=env, check=check, capture_output=True, text=True).stdout


def test_kbh_annotate_on_a_real_x_display(tmp_path, display):
    ws = make_ws(tmp_path / "ws", {"p0": {"s0": 1}}, hw=(240, 320), status=None)
    env = {**os.environ, "DISPLAY": display, "QT_QPA_PLATFORM": "xcb", "XDG_CONFIG_HOME": str(tmp_path / "cfg"),
           "HOME": str(tmp_path)}
    app = subprocess.Popen([sys.executable, "-m", "kbh.cli", "annotate", str(ws), "--annotator", "x11"], env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        def window():
            if app.poll() is not None:
                raise AssertionError(f"kbh annotate exited ({app.returncode}): {app.stderr.read()[-2000:]}")
            return xdo(env, "search", "--onlyvisible", "--name", "kbh annotate", check=False).split()
        win = wait_for(window, 60, "the window")[0]
        xdo(env, "windowfocus", "--sync", win)  # no window manager under Xvfb: focus, not activate
        geo = dict(line.split("=") for line in xdo(env, "getwindowgeometry", "--shell", win).split())
        x0, y0, w, h = (int(geo[k]) for k in ("X", "Y", "WIDTH", "HEIGHT"))
        cx, cy = x0 + int(w * 0.68), y0 + int(h * 0.5)  # the canvas: right of the frame list
        time.sleep(1.0)  # the first frame is loaded and fitted
        xdo(env, "mousemove", "--sync", str(cx), str(cy), "mousedown", "1", "mousemove", "--sync", str(cx + 40),
            str(cy + 5), "mousemove", "--sync", str(cx + 80), str(cy + 10), "mouseup", "1")

        def saved():
            with Workspace.open(ws, readonly=True) as w_:
                f = w_.frames()[0]
                return f.n_strokes == 1 and w_.mask(f) is not None and w_.mask(f).any()
        wait_for(saved, 60, "the stroke's mask in the workspace")
        shot = tmp_path / "x11.png"
        subprocess.run([sys.executable, "-c", GRAB, str(shot)], env=env, check=True, timeout=60)
        import cv2

        pixels = cv2.imread(str(shot))
        assert pixels is not None and pixels.shape[:2] == (900, 1400) and pixels.std() > 10  # not a blank screen
        xdo(env, "windowfocus", "--sync", win)
        xdo(env, "key", "ctrl+q")
        assert app.wait(timeout=60) == 0
        err = app.stderr.read()
        assert "Traceback" not in err, err[-2000:]
    finally:
        if app.poll() is None:
            app.kill()
            app.wait()
    with Workspace.open(ws, readonly=True) as w_:
        f = w_.frames()[0]
        stroke = w_.strokes(f.id)[0]
        assert f.status == "in_progress" and f.annotator == "x11" and stroke.label == 1 and len(stroke.points) >= 2
        assert np.asarray(stroke.points).max() < 320
