"""The annotation queue: which frame a person should open next.

Frames the model is least sure of come first (highest uncertainty among `prelabeled` frames), then unlabeled
frames without a prediction in workspace order, so a person spends time where the model is weakest. Frames a
person has worked on (in progress, done, reviewed) are not in the queue.
"""

from __future__ import annotations

from dataclasses import dataclass

from .workspace import Workspace


@dataclass(frozen=True)
class QueueEntry:
    frame_id: int
    key: str
    status: str
    uncertainty: float | None  # None: no prediction yet
    model: str | None


def annotation_queue(ws: Workspace, model: str | None = None) -> list[QueueEntry]:
    """Prelabeled frames by descending uncertainty (newest prediction, or that of `model`), then unlabeled ones."""
    return [QueueEntry(*row) for row in ws.queue_rows(model)]
