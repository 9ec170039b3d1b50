"""Import frames into a workspace: image folders (+ parallel mask folders), CSV lists, videos, the KBH layout.

An import is all or nothing: every frame is decoded and its mask checked before it is added, everything goes in
one database transaction, and on any error the transaction is rolled back and the files written so far are
removed. Re-importing a file with the same sha256 is skipped, not duplicated.
"""

from __future__ import annotations

import csv
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from .errors import KbhError
from .imageio import DEFAULT_MAX_PIXELS, check_pixels, decode_image, sha256_bytes
from .mask_rules import MaskRule, coverage_warnings, read_mask
from .workspace import PERSON_ATTRIBUTES, Workspace

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}
MASK_EXTENSIONS = IMAGE_EXTENSIONS | {".gif"}  # data sets ship masks as GIFs (DRIVE), never frames
VIDEO_EXTENSIONS = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg"}


@dataclass
class ImportItem:
    image: Path | None  # file to import; None for video frames (then `data` holds PNG bytes)
    person: str
    sequence: str
    frame_index: int | None  # None: numbered after the sequence's existing frames, in item order
    mask: Path | None = None
    person_attrs: dict = field(default_factory=dict)
    sequence_attrs: dict = field(default_factory=dict)
    data: bytes | None = None
    name: str = ""  # what error messages call this item


@dataclass
class ImportReport:
    added: int = 0
    skipped_duplicates: int = 0
    with_masks: int = 0
    mask_coverage: dict = field(default_factory=dict)  # item name -> fraction of the frame that is hand
    persons: set = field(default_factory=set)
    sequences: set = field(default_factory=set)

    def summary(self) -> str:
        text = (f"imported {self.added} frames ({self.with_masks} with masks) of {len(self.persons)} persons, "
                f"{len(self.sequences)} sequences; skipped {self.skipped_duplicates} already in the workspace")
        if self.mask_coverage:
            cov = np.asarray(list(self.mask_coverage.values()))
            text += f"; hand covers {cov.mean():.1%} of a frame on average ({cov.min():.1%}..{cov.max():.1%})"
        return text


# -- id extraction ---------------------------------------------------------------------------------------------
def _match(regex: re.Pattern | None, text: str, what: str, name: str, option: str | None = None) -> str | None:
    if regex is None:
        return None
    m = regex.search(text)
    if not m:
        raise KbhError(f"{name}: {option or f'--{what}-regex'} {regex.pattern!r} does not match {text!r}")
    return m.group(1) if m.groups() else m.group(0)


def _compile(pattern: str | None, what: str) -> re.Pattern | None:
    if pattern is None:
        return None
    try:
        return re.compile(pattern)
    except re.error as e:
        option = f"--{what}" if what == "mask-key" else f"--{what}-regex"
        raise KbhError(f"{option} {pattern!r}: invalid regular expression ({e})") from None


def parse_attrs(pairs: list[str] | None) -> dict:
    """["desk=wood", "lighting=dim"] -> {"desk": "wood", "lighting": "dim"}."""
    out = {}
    for p in pairs or []:
        key, sep, value = p.partition("=")
        if not sep or not key.strip():
            raise KbhError(f"attribute {p!r}: expected key=value")
        out[key.strip()] = value.strip()
    return out


# -- sources ---------------------------------------------------------------------------------------------------
def items_from_folder(images: Path, masks: Path | None = None, person: str | None = None,
                      sequence: str | None = None, person_regex: str | None = None,
                      sequence_regex: str | None = None, index_regex: str | None = None,
                      person_attrs: dict | None = None, sequence_attrs: dict | None = None,
                      mask_key: str | None = None) -> list[ImportItem]:
    """A folder of images (searched recursively), masks matched by relative path in a parallel folder.

    Ids come from options, else from regular expressions over the path relative to `images` (group 1, or the
    whole match), else person = the folder's name and sequence = the person. `mask_key`, a regular expression
    searched in both paths (relative, no extension), pairs images and masks whose names differ: the image and
    the mask with the same group 1 (DRIVE: '^(\\d+)_' pairs 21_training.tif with 21_manual1.gif).
    """
    images = Path(images)
    if not images.is_dir():
        raise KbhError(f"{images}: not a folder")
    if masks is not None and not Path(masks).is_dir():
        raise KbhError(f"{masks}: mask folder not found")
    files = sorted(p for p in images.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
    if not files:
        raise KbhError(f"{images}: no images ({', '.join(sorted(IMAGE_EXTENSIONS))})")
    # Masks pair with images by their path below the folder, without the extension (p01/001.jpg <->
    # p01/001.png); a mask tree that is flat where the images are not pairs by file stem, if that is unique.
    mask_by_rel: dict[str, Path] = {}
    stems: dict[str, list[Path]] = {}
    kr = _compile(mask_key, "mask-key")
    if kr is not None and masks is None:
        raise KbhError("--mask-key needs --masks")
    if masks is not None:
        for p in sorted(Path(masks).rglob("*")):
            if p.is_file() and p.suffix.lower() in MASK_EXTENSIONS:
                rel = p.relative_to(masks).with_suffix("").as_posix()
                if kr is not None:
                    rel = _match(kr, rel, "mask-key", str(p), option="--mask-key")
                if rel in mask_by_rel:
                    raise KbhError(f"{p}: two masks for {rel!r} ({mask_by_rel[rel].name} and {p.name})")
                mask_by_rel[rel] = p
                stems.setdefault(p.stem, []).append(p)
    pr, sr, ir = (_compile(person_regex, "person"), _compile(sequence_regex, "sequence"),
                  _compile(index_regex, "index"))
    items = []
    for f in files:
        rel = f.relative_to(images).with_suffix("").as_posix()
        pid = person or _match(pr, rel, "person", str(f)) or images.name
        sid = sequence or _match(sr, rel, "sequence", str(f)) or pid
        idx = _match(ir, rel, "index", str(f))
        if idx is not None and not idx.isdigit():
            raise KbhError(f"{f}: --index-regex matched {idx!r}, not a number")
        m = mask_by_rel.get(rel if kr is None else _match(kr, rel, "mask-key", str(f), option="--mask-key"))
        if kr is not None and m is None:
            raise KbhError(f"{f}: no mask with the --mask-key {kr.pattern!r} key of {rel!r} in {masks}")
        if masks is not None and m is None:
            same_stem = stems.get(f.stem, [])
            if len(same_stem) > 1:
                raise KbhError(f"{f}: no mask at {rel!r} in {masks}, and {len(same_stem)} masks named {f.stem!r} "
                               f"elsewhere; lay the masks out like the images")
            m = same_stem[0] if same_stem else None
            if m is None:
                raise KbhError(f"{f}: no mask {rel!r} (any image extension) in {masks}")
        items.append(ImportItem(f, pid, sid, int(idx) if idx is not None else None, m,
                                dict(person_attrs or {}), dict(sequence_attrs or {}), name=str(f)))
    return items


CSV_COLUMNS = ("path", "person", "sequence", "frame_index", "mask")


def items_from_csv(csv_path: Path) -> list[ImportItem]:
    """A CSV with columns path, person, sequence[, frame_index][, mask] and attribute columns.

    Attribute columns named after the KBH person attributes (or prefixed `person.`) go to the person; all other
    columns (optionally prefixed `sequence.`) go to the sequence. Relative paths are relative to the CSV's folder.
    """
    csv_path = Path(csv_path)
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as f:
            rows = list(csv.DictReader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise KbhError(f"{csv_path}: cannot read CSV ({e})") from None
    if not rows:
        raise KbhError(f"{csv_path}: no rows")
    missing = {"path", "person"} - set(rows[0])
    if missing:
        raise KbhError(f"{csv_path}: missing column(s) {', '.join(sorted(missing))}")
    base = csv_path.parent
    items = []
    for n, row in enumerate(rows, start=2):  # line 1 is the header
        where = f"{csv_path}:{n}"
        if not (row.get("path") or "").strip() or not (row.get("person") or "").strip():
            raise KbhError(f"{where}: empty path or person")
        pattrs, sattrs = {}, {}
        for k, v in row.items():
            if k is None or k in CSV_COLUMNS or v is None or v == "":
                continue
            if k.startswith("person."):
                pattrs[k[7:]] = v
            elif k in PERSON_ATTRIBUTES:
                pattrs[k] = v
            else:
                sattrs[k.removeprefix("sequence.")] = v
        idx = (row.get("frame_index") or "").strip()
        if idx and not idx.lstrip("-").isdigit():
            raise KbhError(f"{where}: frame_index {idx!r} is not an integer")
        mask = (row.get("mask") or "").strip()
        image = base / row["path"].strip()
        items.append(ImportItem(image, row["person"].strip(), (row.get("sequence") or "").strip() or
                                row["person"].strip(), int(idx) if idx else None,
                                base / mask if mask else None, pattrs, sattrs, name=f"{where} ({image})"))
    return items


def items_from_drive_layout(root: Path) -> list[ImportItem]:
    """The DRIVE retinal-vessel archive (Staal et al. 2004): ROOT/{training,test}/images/NN_*.tif with vessel masks
    ROOT/*/1st_manual/NN_manual1.gif, paired by the number NN, which is also the person and the sequence (each
    image is its own person). The field-of-view masks (ROOT/*/mask) are not imported."""
    root = Path(root)
    for part in ("training", "test"):
        for folder in ("images", "1st_manual"):
            if not (root / part / folder).is_dir():
                raise KbhError(f"{root}: not the DRIVE layout (no {part}/{folder} folder)")
    items = []
    for part in ("training", "test"):
        items += items_from_folder(root / part / "images", root / part / "1st_manual", person_regex=r"^(\d+)_",
                                   mask_key=r"^(\d+)_", sequence_attrs={"subset": part})
    return items


def items_from_kbh_layout(root: Path) -> list[ImportItem]:
    """The KBH archive: `<person>_<sequence>/<frame>_halfres.jpg` with `<frame>_mask.png` beside it."""
    root = Path(root)
    if not root.is_dir():
        raise KbhError(f"{root}: not a folder")
    items = []
    for img in sorted(root.glob("*/*_halfres.jpg")):
        folder = img.parent.name
        person, sep, seq = folder.partition("_")
        frame = img.name[: -len("_halfres.jpg")]
        if not sep or not frame.isdigit():
            raise KbhError(f"{img}: not in the KBH layout <person>_<sequence>/<frame>_halfres.jpg")
        mask = img.with_name(f"{frame}_mask.png")
        items.append(ImportItem(img, person, seq, int(frame), mask if mask.exists() else None, name=str(img)))
    if not items:
        raise KbhError(f"{root}: no <person>_<sequence>/<frame>_halfres.jpg files (KBH layout)")
    return items


def items_from_video(video: Path, every: int, person: str | None, sequence: str | None,
                     person_attrs: dict | None = None, sequence_attrs: dict | None = None,
                     max_pixels: int | None = DEFAULT_MAX_PIXELS) -> list[ImportItem]:
    """Every `every`-th frame of a video, stored losslessly as PNG; frame index = position in the video."""
    video = Path(video)
    if every < 1:
        raise KbhError(f"--every must be >= 1, got {every}")
    if not video.is_file():
        raise KbhError(f"{video}: no such file")
    cap = cv2.VideoCapture(str(video))
    if not cap.isOpened():
        raise KbhError(f"{video}: not a readable video")
    try:
        check_pixels(int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)), str(video),
                     max_pixels)
    except KbhError:
        cap.release()
        raise
    pid = person or video.stem
    sid = sequence or video.stem
    items, i = [], 0
    try:
        while True:
            ok, bgr = cap.read()
            if not ok:
                break
            if i % every == 0:
                ok, buf = cv2.imencode(".png", bgr)
                items.append(ImportItem(None, pid, sid, i, None, dict(person_attrs or {}),
                                        dict(sequence_attrs or {}), data=buf.tobytes(), name=f"{video}#{i}"))
            i += 1
    finally:
        cap.release()
    if not items:
        raise KbhError(f"{video}: no frames could be decoded")
    return items


# -- the import itself -----------------------------------------------------------------------------------------
def import_items(ws: Workspace, items: list[ImportItem], mask_rule: MaskRule | None = None,
                 progress: bool = True, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> ImportReport:
    """Add `items` to the workspace in one transaction; all or nothing. Images and masks larger than
    `max_pixels` (read from their headers) are refused before they are decoded."""
    from tqdm import tqdm

    mask_rule = mask_rule or MaskRule()
    report = ImportReport()
    written: list[Path] = []
    next_index: dict[str, int] = {}
    seen_keys: dict[tuple[str, int], str] = {}
    try:
        with ws.transaction():
            for it in tqdm(items, desc="import", unit="frame", disable=not progress, file=sys.stderr):
                if it.data is None:
                    try:
                        it_data = it.image.read_bytes()
                    except OSError as e:
                        raise KbhError(f"{it.name}: cannot read ({e.strerror or e})") from None
                else:
                    it_data = it.data
                image = decode_image(it_data, it.name, max_pixels)
                h, w = image.shape[:2]
                sha = sha256_bytes(it_data)
                if ws.frame_id_by_sha(sha) is not None:
                    report.skipped_duplicates += 1
                    continue
                mask = None
                if it.mask is not None:
                    mask = read_mask(it.mask, mask_rule, max_pixels)
                    if mask.shape[:2] != (h, w):
                        raise KbhError(f"{it.mask}: mask is {mask.shape[1]}x{mask.shape[0]}, "
                                       f"its frame {it.name} is {w}x{h}")
                ws.upsert_person(it.person, it.person_attrs)
                ws.upsert_sequence(it.sequence, it.person, it.sequence_attrs)
                idx = it.frame_index
                if idx is None:
                    if it.sequence not in next_index:
                        last = ws.last_frame_index(it.sequence)
                        next_index[it.sequence] = -1 if last is None else last
                    next_index[it.sequence] += 1
                    idx = next_index[it.sequence]
                if (it.sequence, idx) in seen_keys:
                    raise KbhError(f"{it.name}: frame {idx} of sequence {it.sequence!r} also given by "
                                   f"{seen_keys[(it.sequence, idx)]}")
                seen_keys[(it.sequence, idx)] = it.name
                ext = it.image.suffix if it.image is not None else ".png"
                fid = ws.add_frame(it.sequence, idx, it_data, ext, w, h, sha)
                written.append(ws.root / ws.frame(fid).path)
                if mask is not None:
                    ws.save_annotation(fid, mask=mask, status="done", source="import", annotator="import")
                    written.append(ws.root / ws.mask_file(fid))
                    report.with_masks += 1
                    report.mask_coverage[it.name] = float(mask.mean())
                report.added += 1
                report.persons.add(it.person)
                report.sequences.add(it.sequence)
    except BaseException:
        for p in written:
            p.unlink(missing_ok=True)
        raise
    return report


def mask_warnings(report: ImportReport) -> list[str]:
    """What the person should look at after an import (see kbh.mask_rules), whatever the flags."""
    return coverage_warnings(report.mask_coverage)
