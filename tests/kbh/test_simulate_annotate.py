import numpy as np

from kbh.cli import main
from kbh.grabcut import iou
from kbh.simulate_annotate import ground_truth
from kbh.synth import synthesize_workspace
from kbh.workspace import Workspace


def test_simulated_annotation_saves_work_like_a_person(tmp_path, capsys):
    ws = Workspace.init(tmp_path / "ws")
    synthesize_workspace(ws, 2, 1, 3, size=(60, 80), seed=1, labeled=False, progress=False)
    frames = ws.frames()
    assert all(f.status == "unlabeled" and ws.mask(f) is None for f in frames)
    gt0 = ground_truth(ws, frames[0])
    # a prediction on frame 1 makes it prelabeled: the simulated person starts from it
    ws.save_prediction(frames[1].id, "m@1", ground_truth(ws, frames[1]).astype(np.float32) * 0.8 + 0.1, 0.3)
    ws.close()
    assert main(["simulate-annotate", str(tmp_path / "ws"), "--person", frames[0].person_id, "--quiet"]) == 0
    assert "annotated 3 frames" in capsys.readouterr().out
    ws = Workspace.open(tmp_path / "ws")
    done = ws.frames(person=frames[0].person_id)
    assert [f.status for f in done] == ["done"] * 3
    assert [f.source for f in done] == ["grabcut", "model", "grabcut"]
    assert all(f.annotator == "simulated" and f.seconds > 0 for f in done)
    f0 = done[0]
    assert f0.n_strokes == len(ws.strokes(f0.id)) >= 1
    assert iou(ws.mask(f0), gt0) >= 0.90 or f0.n_strokes == 20
    # the other person is untouched
    assert all(f.status == "unlabeled" for f in ws.frames() if f.person_id != frames[0].person_id)
    ws.close()
    assert main(["simulate-annotate", str(tmp_path / "ws"), "--person", "nobody"]) == 2
