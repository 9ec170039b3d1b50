"""The annotation workspace: a folder with an SQLite index (`kbh.sqlite`, WAL) and the files it points to.

    frames/        images as imported (original bytes)
    masks/         one lossless PNG per annotated frame, 0 background / 255 hand
    predictions/   model probabilities as uint8 PNG (0..255)

Every file is written to a temporary name and renamed; every SQL statement is parameterised (ids, file names
and attributes are user text). A frame's status moves unlabeled -> prelabeled -> in_progress -> done -> reviewed.
"""

from __future__ import annotations

import contextlib
import json
import re
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import KbhError
from .imageio import atomic_write_bytes, read_image, read_mask_png, write_png
from .strokes import Stroke

DB_NAME = "kbh.sqlite"
SCHEMA_VERSION = 1
STATUSES = ("unlabeled", "prelabeled", "in_progress", "done", "reviewed")
HUMAN_STATUSES = ("in_progress", "done", "reviewed")  # a person has worked on the frame: never overwrite
LABELED_STATUSES = ("done", "reviewed")  # eligible for shards
SOURCES = ("grabcut", "import", "model", "propagated")
# The KBH table's attributes; free-form key=value is allowed besides these.
SEQUENCE_ATTRIBUTES = ("desk", "desk_position", "keyboard", "lighting", "objects_on_desk")
PERSON_ATTRIBUTES = ("bracelet", "watch", "skin_tone", "tattoo", "nail_polish", "rings")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS persons (
    id TEXT PRIMARY KEY,
    attributes TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE IF NOT EXISTS sequences (
    id TEXT PRIMARY KEY,
    person_id TEXT NOT NULL REFERENCES persons(id),
    attributes TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE IF NOT EXISTS frames (
    id INTEGER PRIMARY KEY,
    key TEXT NOT NULL UNIQUE,
    sequence_id TEXT NOT NULL REFERENCES sequences(id),
    frame_index INTEGER NOT NULL,
    path TEXT NOT NULL,
    sha256 TEXT NOT NULL UNIQUE,
    width INTEGER NOT NULL,
    height INTEGER NOT NULL,
    UNIQUE (sequence_id, frame_index)
);
CREATE TABLE IF NOT EXISTS annotations (
    frame_id INTEGER PRIMARY KEY REFERENCES frames(id) ON DELETE CASCADE,
    status TEXT NOT NULL DEFAULT 'unlabeled',
    mask_path TEXT,
    source TEXT,
    annotator TEXT,
    seconds REAL NOT NULL DEFAULT 0,
    strokes INTEGER NOT NULL DEFAULT 0,
    updated REAL
);
CREATE TABLE IF NOT EXISTS strokes (
    id INTEGER PRIMARY KEY,
    frame_id INTEGER NOT NULL REFERENCES frames(id) ON DELETE CASCADE,
    ord INTEGER NOT NULL,
    label INTEGER NOT NULL,
    radius REAL NOT NULL,
    points TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS strokes_by_frame ON strokes(frame_id, ord);
CREATE TABLE IF NOT EXISTS predictions (
    frame_id INTEGER NOT NULL REFERENCES frames(id) ON DELETE CASCADE,
    model TEXT NOT NULL,
    prob_path TEXT NOT NULL,
    uncertainty REAL NOT NULL,
    created REAL NOT NULL,
    PRIMARY KEY (frame_id, model)
);
"""


@dataclass(frozen=True)
class Frame:
    id: int
    key: str  # "<person>_<sequence>/<index:05d>", stable across workspaces (manifests refer to it)
    person_id: str
    sequence_id: str
    frame_index: int
    path: str  # relative to the workspace root
    sha256: str
    width: int
    height: int
    status: str
    source: str | None
    annotator: str | None
    seconds: float
    n_strokes: int


@dataclass(frozen=True)
class Prediction:
    frame_id: int
    model: str
    prob_path: str
    uncertainty: float
    created: float


def frame_key(person_id: str, sequence_id: str, frame_index: int) -> str:
    return f"{person_id}_{sequence_id}/{int(frame_index):05d}"


def safe_name(text: str) -> str:
    """A file-system-safe rendering of user text (ids, model names) for folder and file names."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", str(text)).strip("._") or "_"


_FRAME_SELECT = """
SELECT f.id, f.key, s.person_id, f.sequence_id, f.frame_index, f.path, f.sha256, f.width, f.height,
       a.status, a.source, a.annotator, a.seconds, a.strokes
FROM frames f JOIN sequences s ON s.id = f.sequence_id JOIN annotations a ON a.frame_id = f.id
"""


class Workspace:
    """Open with `Workspace.init(path)` (new) or `Workspace.open(path)` (existing)."""

    def __init__(self, root: Path, conn: sqlite3.Connection):
        self.root = root
        self.conn = conn

    # -- opening ---------------------------------------------------------------------------------------------
    @classmethod
    def init(cls, root: str | Path) -> "Workspace":
        root = Path(root)
        if (root / DB_NAME).exists():
            raise KbhError(f"{root}: already a kbh workspace")
        if root.exists() and not root.is_dir():
            raise KbhError(f"{root}: exists and is not a folder")
        for sub in ("frames", "masks", "predictions"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        conn = cls._connect(root / DB_NAME)
        with conn:
            conn.executescript(_SCHEMA)
            conn.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            conn.execute("INSERT OR REPLACE INTO meta VALUES ('created', ?)", (str(time.time()),))
        return cls(root, conn)

    @classmethod
    def open(cls, root: str | Path) -> "Workspace":
        root = Path(root)
        db = root / DB_NAME
        if not db.is_file():
            raise KbhError(f"{root}: not a kbh workspace (no {DB_NAME}; create one with `kbh init`)")
        try:
            conn = cls._connect(db)
            ok = conn.execute("PRAGMA quick_check").fetchone()[0]
            version = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        except sqlite3.DatabaseError as e:
            raise KbhError(f"{db}: corrupt workspace database ({e})") from None
        if ok != "ok":
            raise KbhError(f"{db}: corrupt workspace database ({ok})")
        if version is None or int(version[0]) > SCHEMA_VERSION:
            raise KbhError(f"{db}: unsupported schema version {version and version[0]}")
        return cls(root, conn)

    @staticmethod
    def _connect(db: Path) -> sqlite3.Connection:
        # Autocommit mode; `transaction()` opens explicit transactions. check_same_thread=False lets the
        # annotator's autosave worker use the connection (it serialises access itself).
        conn = sqlite3.connect(db, isolation_level=None, timeout=30, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA foreign_keys=ON")
        return conn

    def close(self) -> None:
        self.conn.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @contextlib.contextmanager
    def transaction(self):
        """One atomic unit of work; nested calls join the outer transaction."""
        if self.conn.in_transaction:
            yield self.conn
            return
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.conn
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    # -- persons and sequences -------------------------------------------------------------------------------
    def upsert_person(self, person_id: str, attributes: dict | None = None) -> None:
        """Create the person, or merge `attributes` into the existing ones."""
        person_id = str(person_id)
        with self.transaction() as c:
            row = c.execute("SELECT attributes FROM persons WHERE id = ?", (person_id,)).fetchone()
            attrs = {**(json.loads(row[0]) if row else {}), **(attributes or {})}
            c.execute(
                "INSERT INTO persons (id, attributes) VALUES (?, ?) "
                "ON CONFLICT(id) DO UPDATE SET attributes = excluded.attributes",
                (person_id, json.dumps(attrs, sort_keys=True)),
            )

    def upsert_sequence(self, sequence_id: str, person_id: str, attributes: dict | None = None) -> None:
        sequence_id, person_id = str(sequence_id), str(person_id)
        with self.transaction() as c:
            row = c.execute("SELECT person_id, attributes FROM sequences WHERE id = ?", (sequence_id,)).fetchone()
            if row and row[0] != person_id:
                raise KbhError(f"sequence {sequence_id!r} already belongs to person {row[0]!r}, not {person_id!r}")
            if not c.execute("SELECT 1 FROM persons WHERE id = ?", (person_id,)).fetchone():
                self.upsert_person(person_id)
            attrs = {**(json.loads(row[1]) if row else {}), **(attributes or {})}
            c.execute(
                "INSERT INTO sequences (id, person_id, attributes) VALUES (?, ?, ?) "
                "ON CONFLICT(id) DO UPDATE SET attributes = excluded.attributes",
                (sequence_id, person_id, json.dumps(attrs, sort_keys=True)),
            )

    def persons(self) -> dict[str, dict]:
        return {r[0]: json.loads(r[1]) for r in self.conn.execute("SELECT id, attributes FROM persons ORDER BY id")}

    def sequences(self) -> dict[str, tuple[str, dict]]:
        """sequence id -> (person id, attributes)."""
        rows = self.conn.execute("SELECT id, person_id, attributes FROM sequences ORDER BY person_id, id")
        return {r[0]: (r[1], json.loads(r[2])) for r in rows}

    # -- frames ----------------------------------------------------------------------------------------------
    def frame_id_by_sha(self, sha256: str) -> int | None:
        row = self.conn.execute("SELECT id FROM frames WHERE sha256 = ?", (sha256,)).fetchone()
        return row[0] if row else None

    def add_frame(self, sequence_id: str, frame_index: int, data: bytes, ext: str, width: int, height: int,
                  sha256: str) -> int:
        """Store the encoded image `data` and index it; returns the new frame id. Call inside `transaction()`."""
        sequence_id = str(sequence_id)
        row = self.conn.execute("SELECT person_id FROM sequences WHERE id = ?", (sequence_id,)).fetchone()
        if row is None:
            raise KbhError(f"unknown sequence {sequence_id!r}")
        key = frame_key(row[0], sequence_id, frame_index)
        rel = f"frames/{safe_name(row[0])}/{safe_name(sequence_id)}/{int(frame_index):06d}_{sha256[:8]}{ext.lower()}"
        try:
            cur = self.conn.execute(
                "INSERT INTO frames (key, sequence_id, frame_index, path, sha256, width, height) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (key, sequence_id, int(frame_index), rel, sha256, int(width), int(height)),
            )
        except sqlite3.IntegrityError:
            raise KbhError(f"frame {frame_index} of sequence {sequence_id!r} already exists in the workspace") from None
        fid = cur.lastrowid
        self.conn.execute("INSERT INTO annotations (frame_id, status) VALUES (?, 'unlabeled')", (fid,))
        atomic_write_bytes(self.root / rel, data)
        return fid

    def frames(self, status: str | tuple | list | None = None, person: str | None = None,
               sequence: str | None = None) -> list[Frame]:
        """Frames ordered by person, sequence, index; optionally filtered."""
        where, args = [], []
        if status is not None:
            statuses = [status] if isinstance(status, str) else list(status)
            for s in statuses:
                _check_status(s)
            where.append(f"a.status IN ({','.join('?' * len(statuses))})")
            args += statuses
        if person is not None:
            where.append("s.person_id = ?")
            args.append(str(person))
        if sequence is not None:
            where.append("f.sequence_id = ?")
            args.append(str(sequence))
        sql = _FRAME_SELECT + (" WHERE " + " AND ".join(where) if where else "")
        sql += " ORDER BY s.person_id, f.sequence_id, f.frame_index"
        return [Frame(*r) for r in self.conn.execute(sql, args)]

    def frame(self, frame_id: int) -> Frame:
        row = self.conn.execute(_FRAME_SELECT + " WHERE f.id = ?", (int(frame_id),)).fetchone()
        if row is None:
            raise KbhError(f"{self.root}: no frame with id {frame_id}")
        return Frame(*row)

    def frame_by_key(self, key: str) -> Frame | None:
        row = self.conn.execute(_FRAME_SELECT + " WHERE f.key = ?", (key,)).fetchone()
        return Frame(*row) if row else None

    def count_frames(self) -> int:
        return self.conn.execute("SELECT COUNT(*) FROM frames").fetchone()[0]

    def image(self, frame: int | Frame) -> np.ndarray:
        """The frame's image, RGB uint8 (H, W, 3)."""
        f = frame if isinstance(frame, Frame) else self.frame(frame)
        return read_image(self.root / f.path)

    # -- annotations -----------------------------------------------------------------------------------------
    def mask(self, frame: int | Frame) -> np.ndarray | None:
        """The stored mask as uint8 {0, 1} (1 = hand), or None if the frame has none."""
        fid = frame.id if isinstance(frame, Frame) else int(frame)
        row = self.conn.execute("SELECT mask_path FROM annotations WHERE frame_id = ?", (fid,)).fetchone()
        if row is None or row[0] is None:
            return None
        return read_mask_png(self.root / row[0])

    def strokes(self, frame_id: int) -> list[Stroke]:
        rows = self.conn.execute(
            "SELECT label, radius, points FROM strokes WHERE frame_id = ? ORDER BY ord", (int(frame_id),)
        )
        return [Stroke(int(l), float(r), tuple(tuple(p) for p in json.loads(p))) for l, r, p in rows]

    def save_annotation(self, frame_id: int, *, mask: np.ndarray | None = None, strokes: list[Stroke] | None = None,
                        status: str | None = None, source: str | None = None, annotator: str | None = None,
                        add_seconds: float = 0.0) -> None:
        """Store a frame's work in one transaction. `strokes` replaces the frame's stroke list; `mask` (H, W)
        {0,1} or bool replaces its mask file; fields left None keep their value; `add_seconds` accumulates."""
        frame = self.frame(frame_id)
        if status is not None:
            _check_status(status)
        if source is not None and source not in SOURCES:
            raise KbhError(f"unknown annotation source {source!r} (one of {', '.join(SOURCES)})")
        mask_rel = None
        if mask is not None:
            mask = np.asarray(mask)
            if mask.shape != (frame.height, frame.width):
                raise KbhError(f"frame {frame.key}: mask is {mask.shape[1]}x{mask.shape[0]}, "
                               f"frame is {frame.width}x{frame.height}")
            mask_rel = f"masks/{frame.id}.png"
            write_png(self.root / mask_rel, (mask > 0).astype(np.uint8) * 255)
        with self.transaction() as c:
            sets, args = ["updated = ?", "seconds = seconds + ?"], [time.time(), float(add_seconds)]
            for col, val in (("status", status), ("source", source), ("annotator", annotator),
                             ("mask_path", mask_rel)):
                if val is not None:
                    sets.append(f"{col} = ?")
                    args.append(val)
            if strokes is not None:
                c.execute("DELETE FROM strokes WHERE frame_id = ?", (frame.id,))
                c.executemany(
                    "INSERT INTO strokes (frame_id, ord, label, radius, points) VALUES (?, ?, ?, ?, ?)",
                    [(frame.id, i, s.label, s.radius, json.dumps([list(p) for p in s.points]))
                     for i, s in enumerate(strokes)],
                )
                sets.append("strokes = ?")
                args.append(len(strokes))
            c.execute(f"UPDATE annotations SET {', '.join(sets)} WHERE frame_id = ?", (*args, frame.id))

    def set_status(self, frame_id: int, status: str) -> None:
        _check_status(status)
        with self.transaction() as c:
            c.execute("UPDATE annotations SET status = ?, updated = ? WHERE frame_id = ?",
                      (status, time.time(), int(frame_id)))

    # -- predictions -----------------------------------------------------------------------------------------
    def save_prediction(self, frame_id: int, model: str, prob: np.ndarray, uncertainty: float,
                        mark_prelabeled: bool = True) -> bool:
        """Store a model's hand probability map (float in [0, 1] or uint8 0..255) for a frame.

        The frame becomes `prelabeled` only if no person has worked on it; human work is never overwritten.
        Returns True if the status changed to prelabeled.
        """
        frame = self.frame(frame_id)
        prob = np.asarray(prob)
        if prob.shape != (frame.height, frame.width):
            raise KbhError(f"frame {frame.key}: prediction is {prob.shape}, frame is {(frame.height, frame.width)}")
        prob8 = prob if prob.dtype == np.uint8 else np.clip(np.rint(prob * 255.0), 0, 255).astype(np.uint8)
        rel = f"predictions/{frame.id}_{safe_name(model)}.png"
        write_png(self.root / rel, prob8)
        with self.transaction() as c:
            c.execute(
                "INSERT OR REPLACE INTO predictions (frame_id, model, prob_path, uncertainty, created) "
                "VALUES (?, ?, ?, ?, ?)",
                (frame.id, model, rel, float(uncertainty), time.time()),
            )
            if mark_prelabeled and frame.status in ("unlabeled", "prelabeled"):
                c.execute("UPDATE annotations SET status = 'prelabeled', updated = ? WHERE frame_id = ?",
                          (time.time(), frame.id))
                return True
        return False

    def prediction(self, frame_id: int, model: str | None = None) -> Prediction | None:
        """The newest prediction for a frame (of `model`, if given)."""
        sql = "SELECT frame_id, model, prob_path, uncertainty, created FROM predictions WHERE frame_id = ?"
        args: list = [int(frame_id)]
        if model is not None:
            sql += " AND model = ?"
            args.append(model)
        row = self.conn.execute(sql + " ORDER BY created DESC LIMIT 1", args).fetchone()
        return Prediction(*row) if row else None

    def prediction_probability(self, pred: Prediction) -> np.ndarray:
        """The stored probability map as float32 in [0, 1]."""
        import cv2

        arr = cv2.imread(str(self.root / pred.prob_path), cv2.IMREAD_GRAYSCALE)
        if arr is None:
            raise KbhError(f"{self.root / pred.prob_path}: missing or unreadable prediction file")
        return arr.astype(np.float32) / 255.0


def _check_status(status: str) -> None:
    if status not in STATUSES:
        raise KbhError(f"unknown status {status!r} (one of {', '.join(STATUSES)})")
