"""The annotation workspace: a folder with an SQLite index (`kbh.sqlite`, WAL) and the files it points to.

    frames/        images as imported (original bytes)
    masks/         one lossless PNG per annotated frame, 0 background / 255 hand, named by its content
    predictions/   model probabilities as uint8 PNG (0..255), named by their content

Every file is written to a temporary name and renamed, before the transaction whose row names it commits; a
file is removed only after the row stops naming it. So a killed process leaves the old row with its old files,
or the new row with its new files, plus at most some files no row names: those are swept when the workspace is
next opened for writing with no other writer (see docs/crash-safety.md). Every SQL statement is parameterised
(ids, file names and attributes are user text). A frame's status moves unlabeled -> prelabeled -> in_progress ->
done -> reviewed.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import sqlite3
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import KbhError
from .atomic_file import atomic_write_bytes
from .imageio import read_image, read_mask_png, write_png
from .strokes import Stroke

DB_NAME = "kbh.sqlite"
LOCK_NAME = ".kbh.lock"  # writers hold a shared flock on it; the orphan sweep needs it exclusively
FILE_FOLDERS = ("frames", "masks", "predictions")  # every file in these is named by a row, or is an orphan
BUSY_TIMEOUT_S = 30
SCHEMA_VERSION = 2  # 2: annotations.note, history (docs/adr/0009); version 1 workspaces are upgraded when opened
STATUSES = ("unlabeled", "prelabeled", "in_progress", "done", "reviewed")
HUMAN_STATUSES = ("in_progress", "done", "reviewed")  # a person has worked on the frame: never overwrite
LABELED_STATUSES = ("done", "reviewed")  # eligible for shards
SOURCES = ("grabcut", "import", "model", "propagated", "manual")  # manual: direct paint/polygon edits in the mask
PROPAGATED = "propagated"  # a mask seeded from the previous frame of the sequence (a source, and a prediction's tag)


def propagated_model(model: str | None = None) -> str:
    """The prediction model name under which a propagated mask is stored: "propagated" (the annotator's
    Propagate) or "<model>@<step>/propagated" (`kbh predict --propagate`)."""
    return f"{model}/{PROPAGATED}" if model else PROPAGATED


def is_propagated(model: str) -> bool:
    """Whether a prediction's model name marks a propagated mask (either form of `propagated_model`)."""
    return model == PROPAGATED or model.endswith(f"/{PROPAGATED}")


def previous_index(frame_index: int) -> int:
    """The index of the frame that seeds `frame_index` in its sequence: propagation's adjacency rule, used for
    workspace frames (Workspace.previous_frame) and for shard records alike."""
    return frame_index - 1


# The KBH table's attributes; free-form key=value is allowed besides these.
SEQUENCE_ATTRIBUTES = ("desk", "desk_position", "keyboard", "lighting", "objects_on_desk")
PERSON_ATTRIBUTES = ("bracelet", "watch", "skin_tone", "tattoo", "nail_polish", "rings")

# Each frame's undo history (annotator.history), written with the frame's annotation in one transaction.
_HISTORY_TABLE = """
CREATE TABLE IF NOT EXISTS history (
    frame_id INTEGER PRIMARY KEY REFERENCES frames(id) ON DELETE CASCADE,
    data BLOB NOT NULL
);
"""
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
    updated REAL,
    note TEXT
);
CREATE TABLE IF NOT EXISTS strokes (
    id INTEGER PRIMARY KEY,
    frame_id INTEGER NOT NULL REFERENCES frames(id) ON DELETE CASCADE,
    ord INTEGER NOT NULL,
    label INTEGER NOT NULL,
    radius REAL NOT NULL,
    points TEXT NOT NULL,
    kind TEXT NOT NULL DEFAULT 'scribble'
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
""" + _HISTORY_TABLE


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


def _private_copy(db: Path, wal: Path) -> Path:
    """Copies of a database and its -wal file in a temporary folder (removed at exit), for reading a read-only
    workspace whose last writer was killed before its checkpoint."""
    import atexit
    import shutil
    import tempfile

    tmp = Path(tempfile.mkdtemp(prefix="kbh-ro-"))
    atexit.register(shutil.rmtree, tmp, True)
    try:
        shutil.copyfile(db, tmp / db.name)
        shutil.copyfile(wal, tmp / wal.name)
    except OSError as e:
        raise KbhError(f"{db}: cannot read ({e.strerror})") from None
    return tmp / db.name


def _uri_path(path: Path) -> str:
    from urllib.parse import quote

    return quote(str(path.resolve()))


def _lock_shared(root: Path, try_exclusive: bool = False) -> tuple[int, bool]:
    """Open and flock the workspace's lock file: exclusively if `try_exclusive` and no one else holds it, else
    shared (waiting only for an opener's sweep). Returns (descriptor, exclusive). The lock dies with the
    process, so a kill never leaves it behind."""
    try:
        fd = os.open(root / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as e:
        raise KbhError(f"{root / LOCK_NAME}: cannot open the workspace lock ({e.strerror})") from None
    if try_exclusive:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd, True
        except BlockingIOError:
            pass
    fcntl.flock(fd, fcntl.LOCK_SH)
    return fd, False


def _unlock(fd: int | None) -> None:
    if fd is not None:
        with contextlib.suppress(OSError):
            os.close(fd)


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


class _Connection(sqlite3.Connection):
    """sqlite3's connection, whose operational errors (locked, read-only, disk full, I/O) become one-line
    KbhErrors naming the database file. Integrity errors pass through: callers turn them into their own."""

    db_path: Path

    def execute(self, *args):
        try:
            return super().execute(*args)
        except sqlite3.Error as e:
            raise _database_error(self.db_path, e) from None

    def executemany(self, *args):
        try:
            return super().executemany(*args)
        except sqlite3.Error as e:
            raise _database_error(self.db_path, e) from None

    def executescript(self, *args):
        try:
            return super().executescript(*args)
        except sqlite3.Error as e:
            raise _database_error(self.db_path, e) from None


def _database_error(db: Path, e: sqlite3.Error) -> Exception:
    if isinstance(e, sqlite3.IntegrityError):
        return e
    text = str(e)
    if "locked" in text or "busy" in text:
        return KbhError(f"{db}: locked by another process for more than {BUSY_TIMEOUT_S} s; close the other kbh "
                        f"command or annotator and try again")
    if "readonly" in text or "read-only" in text:
        return KbhError(f"{db}: read-only; cannot save changes (open it where you may write, or copy it)")
    if "full" in text:
        return KbhError(f"{db}: cannot write (No space left on device)")
    if isinstance(e, sqlite3.OperationalError) and "unable to open" not in text:
        return KbhError(f"{db}: {text}")
    return KbhError(f"{db}: corrupt workspace database ({text})")


def _writable(path: Path) -> bool:
    return os.access(path, os.W_OK)


class Workspace:
    """Open with `Workspace.init(path)` (new) or `Workspace.open(path)` (existing; `readonly=True` for commands
    that only read, which also works on a read-only folder or file system)."""

    def __init__(self, root: Path, conn: sqlite3.Connection, readonly: bool = False, lock_fd: int | None = None):
        self.root = root
        self.conn = conn
        self.readonly = readonly
        self._lock_fd = lock_fd
        self.swept: tuple[int, int] = (0, 0)  # orphaned files removed at opening, and their bytes

    # -- opening ---------------------------------------------------------------------------------------------
    @classmethod
    def init(cls, root: str | Path) -> "Workspace":
        root = Path(root)
        if (root / DB_NAME).exists():
            raise KbhError(f"{root}: already a kbh workspace")
        if root.exists() and not root.is_dir():
            raise KbhError(f"{root}: exists and is not a folder")
        try:
            for sub in FILE_FOLDERS:
                (root / sub).mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise KbhError(f"{root}: cannot create the workspace ({e.strerror})") from None
        lock_fd, _ = _lock_shared(root)
        conn = cls._connect(root / DB_NAME)
        with conn:
            conn.executescript(_SCHEMA)
            conn.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            conn.execute("INSERT OR REPLACE INTO meta VALUES ('created', ?)", (str(time.time()),))
        return cls(root, conn, lock_fd=lock_fd)

    @classmethod
    def open(cls, root: str | Path, readonly: bool = False, sweep: bool = True) -> "Workspace":
        """Open an existing workspace. For writing, the first opener (no other writer holds it) removes the
        files no row names (left by a killed process) and reports how many on stderr; `sweep=False` skips that."""
        root = Path(root)
        db = root / DB_NAME
        if not db.is_file():
            raise KbhError(f"{root}: not a kbh workspace (no {DB_NAME}; create one with `kbh init`)")
        if not readonly and not (_writable(root) and _writable(db)):
            raise KbhError(f"{root}: read-only workspace (cannot write {db.name} there); commands that only read "
                           f"it (stats, export, split, queue) still work")
        lock_fd, exclusive = (None, False) if readonly else _lock_shared(root, try_exclusive=sweep)
        try:
            conn = cls._connect(db, readonly)
            ok = conn.execute("PRAGMA quick_check").fetchone()[0]
            version = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        except KbhError:
            _unlock(lock_fd)
            raise
        except sqlite3.DatabaseError as e:
            _unlock(lock_fd)
            raise KbhError(f"{db}: corrupt workspace database ({e})") from None
        if ok != "ok":
            _unlock(lock_fd)
            raise KbhError(f"{db}: corrupt workspace database ({ok})")
        if version is None or int(version[0]) > SCHEMA_VERSION:
            _unlock(lock_fd)
            raise KbhError(f"{db}: unsupported schema version {version and version[0]}")
        ws = cls(root, conn, readonly, lock_fd)
        if not readonly and int(version[0]) < SCHEMA_VERSION:
            ws._upgrade(int(version[0]))
        if exclusive:
            ws.swept = ws.sweep_orphans()
            fcntl.flock(lock_fd, fcntl.LOCK_SH)  # downgrade: other writers may open it now
            if ws.swept[0]:
                print(f"kbh: swept {ws.swept[0]} orphaned file(s) ({ws.swept[1] / 1e6:.1f} MB) that an "
                      f"interrupted process left in {root}", file=sys.stderr)
        return ws

    @staticmethod
    def _connect(db: Path, readonly: bool = False) -> sqlite3.Connection:
        # Autocommit mode; `transaction()` opens explicit transactions. check_same_thread=False lets the
        # annotator's autosave worker use the connection (it serialises access itself).
        if readonly:
            # mode=ro reads alongside writers (WAL). Where the folder itself is read-only, SQLite cannot make
            # its shared-memory file: then nobody can be writing, and immutable=1 reads without it, unless a
            # killed writer left committed transactions in the -wal file, which immutable=1 would not see:
            # then a private copy of the two files is read.
            wal = db.with_name(db.name + "-wal")
            if _writable(db.parent):
                uri = f"file:{_uri_path(db)}?mode=ro"
            elif wal.is_file() and wal.stat().st_size > 0:
                uri = f"file:{_uri_path(_private_copy(db, wal))}?mode=ro"
            else:
                uri = f"file:{_uri_path(db)}?immutable=1"
        else:
            uri = f"file:{_uri_path(db)}"
        try:
            conn = sqlite3.connect(uri, uri=True, isolation_level=None, timeout=BUSY_TIMEOUT_S,
                                   check_same_thread=False, factory=_Connection)
        except sqlite3.Error as e:
            raise _database_error(db, e) from None
        conn.db_path = db
        if not readonly:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA foreign_keys=ON")
        return conn

    def close(self) -> None:
        self.conn.close()
        _unlock(self._lock_fd)
        self._lock_fd = None

    def _upgrade(self, version: int) -> None:
        """Bring an older workspace to SCHEMA_VERSION in one transaction (new tables and columns only)."""
        with self.transaction() as c:
            c.execute(_HISTORY_TABLE)
            columns = {r[1] for r in c.execute("PRAGMA table_info(annotations)")}
            if "note" not in columns:
                c.execute("ALTER TABLE annotations ADD COLUMN note TEXT")
            if "kind" not in {r[1] for r in c.execute("PRAGMA table_info(strokes)")}:
                c.execute("ALTER TABLE strokes ADD COLUMN kind TEXT NOT NULL DEFAULT 'scribble'")
            c.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))

    # -- settings that travel with the workspace (the annotator's place, brush size) ---------------------------
    def setting(self, key: str, default: str | None = None) -> str | None:
        row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (f"setting.{key}",)).fetchone()
        return row[0] if row else default

    def set_setting(self, key: str, value) -> None:
        with self.transaction() as c:
            c.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (f"setting.{key}", str(value)))

    def sweep_orphans(self) -> tuple[int, int]:
        """Remove the files under frames/, masks/ and predictions/ that no row names (a killed import's frames,
        a mask written just before a kill, temporary files). Call only as the sole writer. Returns (files,
        bytes) removed."""
        named = self.referenced_files()
        n = size = 0
        for folder in FILE_FOLDERS:
            for dirpath, _, files in os.walk(self.root / folder):
                for name in files:
                    path = Path(dirpath) / name
                    if path.relative_to(self.root).as_posix() not in named:
                        with contextlib.suppress(OSError):
                            size += path.stat().st_size
                            path.unlink()
                            n += 1
        return n, size

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

    def add_image(self, sequence_id: str, frame_index: int, rgb: np.ndarray) -> int:
        """Store an RGB uint8 (H, W, 3) image as a lossless PNG frame: encoded, hashed and measured here (the
        callers of `add_frame` need not). Returns the new frame id; joins an outer transaction if there is one."""
        import cv2

        rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
        ok, buf = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        if not ok:
            raise KbhError(f"frame {frame_index} of sequence {sequence_id!r}: could not encode as PNG")
        data = buf.tobytes()
        with self.transaction():
            return self.add_frame(sequence_id, frame_index, data, ".png", rgb.shape[1], rgb.shape[0],
                                  hashlib.sha256(data).hexdigest())

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

    # -- counts and lists the commands need (no SQL outside this module) ------------------------------------
    def status_counts(self) -> dict[str, int]:
        """status -> number of frames, every status present (0 where none)."""
        counts = dict.fromkeys(STATUSES, 0)
        for status, n in self.conn.execute("SELECT status, COUNT(*) FROM annotations GROUP BY status"):
            counts[status] = n
        return counts

    def frames_without_mask(self) -> set[int]:
        return {r[0] for r in self.conn.execute("SELECT frame_id FROM annotations WHERE mask_path IS NULL")}

    def last_frame_index(self, sequence_id: str) -> int | None:
        """The highest frame index stored for a sequence, or None (new sequence)."""
        return self.conn.execute("SELECT MAX(frame_index) FROM frames WHERE sequence_id = ?",
                                 (str(sequence_id),)).fetchone()[0]

    def set_statuses(self, statuses: dict[int, str]) -> None:
        """Set many frames' statuses in one transaction (frame id -> status)."""
        for s in set(statuses.values()):
            _check_status(s)
        with self.transaction() as c:
            c.executemany("UPDATE annotations SET status = ?, updated = ? WHERE frame_id = ?",
                          [(s, time.time(), int(fid)) for fid, s in statuses.items()])

    def count_predicted_frames(self) -> int:
        return self.conn.execute("SELECT COUNT(DISTINCT frame_id) FROM predictions").fetchone()[0]

    def newest_uncertainties(self) -> dict[int, float]:
        """frame id -> the uncertainty of its newest prediction, for every frame that has one."""
        rows = self.conn.execute("SELECT frame_id, uncertainty, MAX(created) FROM predictions GROUP BY frame_id")
        return {fid: float(u) for fid, u, _ in rows}

    def queue_rows(self, model: str | None = None) -> list[tuple]:
        """(frame id, key, status, uncertainty or None, model or None) of the unlabeled and prelabeled frames: by
        descending uncertainty of the newest prediction (of `model`, if given), then the rest in workspace order."""
        sql = """
            SELECT f.id, f.key, a.status, p.uncertainty, p.model
            FROM frames f
            JOIN annotations a ON a.frame_id = f.id
            JOIN sequences s ON s.id = f.sequence_id
            LEFT JOIN predictions p ON p.rowid = (
                SELECT q.rowid FROM predictions q WHERE q.frame_id = f.id AND (? IS NULL OR q.model = ?)
                ORDER BY q.created DESC, q.rowid DESC LIMIT 1)
            WHERE a.status IN ('unlabeled', 'prelabeled')
            ORDER BY p.uncertainty IS NULL, p.uncertainty DESC, s.person_id, f.sequence_id, f.frame_index
        """
        return self.conn.execute(sql, (model, model)).fetchall()

    def referenced_files(self) -> set[str]:
        """Every file a row names (frames, masks, predictions), relative to the root."""
        named = set()
        for sql in ("SELECT path FROM frames", "SELECT mask_path FROM annotations WHERE mask_path IS NOT NULL",
                    "SELECT prob_path FROM predictions"):
            named.update(r[0] for r in self.conn.execute(sql))
        return named

    def integrity_check(self) -> str:
        return self.conn.execute("PRAGMA integrity_check").fetchone()[0]

    def previous_frame(self, frame: Frame) -> Frame | None:
        """The frame just before `frame` in its sequence (previous_index), or None: what propagation seeds from."""
        row = self.conn.execute(_FRAME_SELECT + " WHERE f.sequence_id = ? AND f.frame_index = ?",
                                (frame.sequence_id, previous_index(frame.frame_index))).fetchone()
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
        rel = self.mask_file(frame.id if isinstance(frame, Frame) else int(frame))
        return None if rel is None else read_mask_png(self.root / rel)

    def strokes(self, frame_id: int) -> list[Stroke]:
        try:
            rows = self.conn.execute("SELECT label, radius, points, kind FROM strokes WHERE frame_id = ? ORDER BY ord",
                                     (int(frame_id),)).fetchall()
        except KbhError:  # a version-1 workspace opened read-only: scribbles only
            rows = [(*r, "scribble") for r in self.conn.execute(
                "SELECT label, radius, points FROM strokes WHERE frame_id = ? ORDER BY ord", (int(frame_id),))]
        return [Stroke(int(lb), float(r), tuple(tuple(p) for p in json.loads(pts)), k) for lb, r, pts, k in rows]

    def save_annotation(self, frame_id: int, *, mask: np.ndarray | None = None, strokes: list[Stroke] | None = None,
                        status: str | None = None, source: str | None = None, annotator: str | None = None,
                        add_seconds: float = 0.0, history: bytes | None = None, note: str | None = None) -> None:
        """Store a frame's work in one transaction. `strokes` replaces the frame's stroke list; `mask` (H, W)
        {0,1} or bool replaces its mask file; `history` its undo history (annotator.history); `note` its review
        note ("" clears it); fields left None keep their value; `add_seconds` accumulates."""
        frame = self.frame(frame_id)
        if status is not None:
            _check_status(status)
        if source is not None and source not in SOURCES:
            raise KbhError(f"unknown annotation source {source!r} (one of {', '.join(SOURCES)})")
        mask_rel = old_rel = None
        if mask is not None:
            mask = np.asarray(mask)
            if mask.shape != (frame.height, frame.width):
                raise KbhError(f"frame {frame.key}: mask is {mask.shape[1]}x{mask.shape[0]}, "
                               f"frame is {frame.width}x{frame.height}")
            # Named by content and written before the commit: the committed row and its mask file always belong
            # together, whenever the process dies (docs/crash-safety.md). The old file goes after the commit.
            bits = (mask > 0).astype(np.uint8)
            mask_rel = f"masks/{frame.id}_{_content_tag(bits)}.png"
            old_rel = self.mask_file(frame.id)
            if mask_rel != old_rel or not (self.root / mask_rel).is_file():
                write_png(self.root / mask_rel, bits * 255)
        joined = self.conn.in_transaction  # then the outer transaction may still roll back: keep the old file
        with self.transaction() as c:
            sets, args = ["updated = ?", "seconds = seconds + ?"], [time.time(), float(add_seconds)]
            for col, val in (("status", status), ("source", source), ("annotator", annotator),
                             ("mask_path", mask_rel), ("note", None if note is None else (note or None))):
                if val is not None:
                    sets.append(f"{col} = ?")
                    args.append(val)
            if strokes is not None:
                c.execute("DELETE FROM strokes WHERE frame_id = ?", (frame.id,))
                c.executemany(
                    "INSERT INTO strokes (frame_id, ord, label, radius, points, kind) VALUES (?, ?, ?, ?, ?, ?)",
                    [(frame.id, i, s.label, s.radius, json.dumps([list(p) for p in s.points]), s.kind)
                     for i, s in enumerate(strokes)],
                )
                sets.append("strokes = ?")
                args.append(len(strokes))
            if note == "":
                sets.append("note = NULL")
            if history is not None:
                c.execute("INSERT OR REPLACE INTO history (frame_id, data) VALUES (?, ?)", (frame.id, history))
            c.execute(f"UPDATE annotations SET {', '.join(sets)} WHERE frame_id = ?", (*args, frame.id))
        if old_rel and mask_rel and old_rel != mask_rel and not joined:
            self._remove_file(old_rel)

    def history(self, frame_id: int) -> bytes | None:
        """The frame's stored undo history, or None (none yet, or a version-1 workspace opened read-only)."""
        try:
            row = self.conn.execute("SELECT data FROM history WHERE frame_id = ?", (int(frame_id),)).fetchone()
        except KbhError:
            return None
        return bytes(row[0]) if row else None

    def note(self, frame_id: int) -> str | None:
        """The review note stored with the frame (why it was sent back), or None."""
        try:
            row = self.conn.execute("SELECT note FROM annotations WHERE frame_id = ?", (int(frame_id),)).fetchone()
        except KbhError:
            return None
        return row[0] if row else None

    def ground_truth_path(self, frame: Frame | int) -> Path:
        """Where a reference mask kept apart from the annotation lives (synthetic frames' exact masks, for the
        simulated annotator): WS/ground_truth/<frame id>.png, 0 background / 255 hand."""
        fid = frame.id if isinstance(frame, Frame) else int(frame)
        return self.root / "ground_truth" / f"{fid}.png"

    def mask_file(self, frame_id: int) -> str | None:
        """The frame's mask file, relative to the root, or None."""
        row = self.conn.execute("SELECT mask_path FROM annotations WHERE frame_id = ?", (int(frame_id),)).fetchone()
        return row[0] if row else None

    def _remove_file(self, rel: str) -> None:
        """Best effort: a file left behind is an orphan the next sweep removes."""
        with contextlib.suppress(OSError):
            (self.root / rel).unlink()

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
        rel = f"predictions/{frame.id}_{safe_name(model)}_{_content_tag(prob8)}.png"
        row = self.conn.execute("SELECT prob_path FROM predictions WHERE frame_id = ? AND model = ?",
                                (frame.id, model)).fetchone()
        old_rel = row[0] if row else None
        write_png(self.root / rel, prob8)
        changed, joined = False, self.conn.in_transaction
        with self.transaction() as c:
            c.execute(
                "INSERT OR REPLACE INTO predictions (frame_id, model, prob_path, uncertainty, created) "
                "VALUES (?, ?, ?, ?, ?)",
                (frame.id, model, rel, float(uncertainty), time.time()),
            )
            if mark_prelabeled and frame.status in ("unlabeled", "prelabeled"):
                c.execute("UPDATE annotations SET status = 'prelabeled', updated = ? WHERE frame_id = ?",
                          (time.time(), frame.id))
                changed = True
        if old_rel and old_rel != rel and not joined:
            self._remove_file(old_rel)
        return changed

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


def _content_tag(array: np.ndarray) -> str:
    """16 hex digits of the sha256 of an array's shape and bytes: file names that change with the content."""
    h = hashlib.sha256(repr(array.shape).encode())
    h.update(np.ascontiguousarray(array).tobytes())
    return h.hexdigest()[:16]


def _check_status(status: str) -> None:
    if status not in STATUSES:
        raise KbhError(f"unknown status {status!r} (one of {', '.join(STATUSES)})")
