import numpy as np

from kbh.cli import main
from kbh.queue import annotation_queue
from kbh.workspace import Workspace
from tests.helpers import blob_image


def test_queue_orders_by_uncertainty_and_skips_human_work(tmp_path, capsys):
    ws = Workspace.init(tmp_path / "ws")
    ws.upsert_sequence("s", "p")
    ids = [ws.add_image("s", i, blob_image(seed=i)[0]) for i in range(5)]
    prob = np.full((40, 60), 0.5, np.float32)
    ws.save_prediction(ids[0], "m", prob, 0.10)
    ws.save_prediction(ids[1], "m", prob, 0.90)
    ws.save_prediction(ids[2], "m", prob, 0.50)
    ws.save_annotation(ids[2], status="in_progress")  # a person started it: out of the queue
    ws.save_prediction(ids[3], "old", prob, 0.99)
    ws.save_prediction(ids[3], "m", prob, 0.05)  # newest prediction counts
    q = annotation_queue(ws)
    assert [e.frame_id for e in q] == [ids[1], ids[0], ids[3], ids[4]]
    assert q[-1].uncertainty is None and q[-1].status == "unlabeled"
    assert [e.frame_id for e in annotation_queue(ws, model="old")][0] == ids[3]
    ws.close()
    assert main(["queue", str(tmp_path / "ws"), "--limit", "2"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("4 frames to annotate; the first 2:") and "p_s/00001" in out.splitlines()[1]
