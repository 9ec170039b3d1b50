"""Atomic file writes: every file kbh writes (frames, masks, manifests, shards, checkpoints, reports) goes to a
temporary name in the same folder and is renamed over the target, so a killed process leaves either the old file
or the new one, never half of one. Also the one place that turns "this place cannot take the file" OS errors
(disk full, read-only, denied) into a one-line KbhError. Folders: kbh.atomic_folder."""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from pathlib import Path

from .errors import KbhError

# Errors that mean "this place cannot take the file", whatever wrote it (ours, h5py, torch.save).
WRITE_ERRNOS = {errno.ENOSPC, errno.EROFS, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EFBIG, errno.EIO}
_WRITE_TEXT = {"no space left": "No space left on device", "read-only file system": "Read-only file system",
               "disk quota": "Disk quota exceeded", "permission denied": "Permission denied"}


def _read_umask() -> int:
    """The process umask, read without changing it (os.umask would, and threads could see the change)."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    old = os.umask(0o022)
    os.umask(old)
    return old


UMASK = _read_umask()
FILE_MODE = 0o666 & ~UMASK  # what open() would give; mkstemp's 0600 would hide files from a shared lab folder
DIR_MODE = 0o777 & ~UMASK


def write_error(path: str | os.PathLike, e: OSError) -> KbhError | None:
    """A one-line KbhError for an OSError that means `path` cannot be written (disk full, read-only, denied),
    also when a library reports it only in its message (h5py does); None for other errors."""
    if e.errno in WRITE_ERRNOS:
        return KbhError(f"{path}: cannot write ({e.strerror or os.strerror(e.errno)})")
    text = str(e).lower()
    for needle, what in _WRITE_TEXT.items():
        if needle in text:
            return KbhError(f"{path}: cannot write ({what})")
    return None


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None):
    """Yield a temporary path beside `path`; on success fsync and rename it over `path`, else delete it.

    The file gets the umask's mode, as a plain open() would. An OSError meaning the folder cannot take the file
    (disk full, read-only, permission) becomes a KbhError naming `path`.
    """
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix or path.suffix + ".tmp", dir=path.parent)
        os.fchmod(fd, FILE_MODE)
        os.close(fd)
        yield Path(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        full = isinstance(e, (OSError, RuntimeError)) and disk_full(path.parent)  # before unlinking frees space
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        if isinstance(e, OSError) and (err := write_error(path, e)) is not None:
            raise err from None
        if full:  # a library that reports the full disk its own way (torch.save: "unexpected pos")
            raise KbhError(f"{path}: cannot write (No space left on device)") from None
        raise


def disk_full(folder: str | os.PathLike, slack: int = 1 << 16) -> bool:
    """True if the file system holding `folder` has (almost) no space left for this user."""
    try:
        st = os.statvfs(folder)
    except OSError:
        return False
    return st.f_bavail * st.f_frsize < slack


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        Path(tmp).write_bytes(data)
