"""The ``Sequence`` type and the readers of every benchmark layout pulkit supports.

Readers give frames and boxes in pulkit's convention, the input of every stage.
Layouts and hostile-input handling: docs/modules.md.
"""
from __future__ import annotations

import contextlib
import io
import os
import re
import warnings
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from pulkit.core import paths
from pulkit.data import crops
from pulkit.data.images import ImageError, image_size, read_rgb


class DataError(ValueError):
    """A dataset file or folder that cannot be read as its layout requires (the message names it)."""


class LabelAccessError(RuntimeError):
    """Code that must not see labels (the unsupervised stages) tried to read them.

    A ``RuntimeError`` on purpose, not an ``AttributeError``: ``getattr(seq, "boxes", None)``
    must fail loudly rather than quietly return None.
    """


# Every hostile input the readers handle, and what they do (tests/test_hostile_inputs.py).
HOSTILE_INPUTS: list[tuple[str, str]] = [
    ("missing dataset folder", "DataError naming the folder and the expected layout"),
    ("dataset path is a file", "DataError: expected a folder"),
    ("missing list.txt (VOT, GOT-10k)", "DataError naming the missing list.txt"),
    ("list.txt names a missing sequence folder", "DataError naming the folder"),
    ("missing annotation file", "DataError naming the expected file"),
    ("frame count != box count (fewer or more boxes)", "DataError naming the file and both counts"),
    ("gap in frame numbering", "DataError naming the first missing frame"),
    ("no frames at all", "DataError naming the folder and the expected frame names"),
    ("wrong separator (e.g. semicolons) or non-numeric token", "DataError naming file, line and text"),
    ("blank line inside an annotation file", "DataError naming file and line (trailing blank lines are ignored)"),
    ("wrong number of values on a line", "DataError naming file, line and count"),
    ("VOT mask annotations (VOT2020+)", "DataError: not supported"),
    ("NaN / inf, zero-size, negative-size, outside-the-frame or huge boxes",
     "marked absent (NaN row), counted in one warning per file and in attributes['unusable_boxes']"),
    ("self-intersecting VOT polygon", "bounds of its corners as the box, polygon kept as given"),
    ("one-frame sequence", "read normally"),
    ("zero-byte or truncated JPEG / PNG", "ImageError naming the file (iter_frames(on_error='skip'): warned, counted, skipped)"),
    ("non-image bytes, or a folder, where a frame should be", "ImageError naming the path"),
    ("grayscale (or 16-bit) PNG frames", "decoded to RGB uint8 H x W x 3"),
    ("unicode and spaces in paths", "read normally (bytes decoded with numpy + cv2.imdecode)"),
    ("non-UTF-8 annotation file", "DataError naming the file"),
    ("malformed VID XML / GOT-10k label file", "DataError naming the file"),
]

_IMAGE_EXTS = (".jpg", ".jpeg", ".png")
_SEP = re.compile(r"\s*,\s*|\s+")
# A box wider or taller than this many frame sides is no annotation of a visible target.
_MAX_BOX_FRAMES = 2.0
# Frame ranges that OTB-2015 folders hold beyond their annotation (as the got10k toolkit applies them).
OTB_FRAME_RANGES: dict[str, tuple[int, int]] = {
    "david": (300, 770), "football1": (1, 74), "freeman3": (1, 460), "freeman4": (1, 283), "diving": (1, 215),
}
# Attributes derived from labels: hidden from unlabeled views.
LABEL_ATTRIBUTES = frozenset({"absence", "cover", "cut_by_image", "occluded", "unusable_boxes", "objects"})


# --------------------------------------------------------------------------- the type
@dataclass
class Sequence:
    """One video with (optional) ground truth.

    ``boxes`` is N x 4 float64, 0-based ``[x, y, w, h]`` (see ``pulkit.data.crops``), a NaN row
    where the target is absent or its annotation is unusable; None for unlabeled video.
    ``polygons`` keeps VOT's N x 8 rotated boxes (0-based) for VOT overlap, else None.
    ``attributes`` holds per-sequence facts (``resolution`` as (width, height), ``dataset``) and
    per-frame arrays of length N (``absence``, ``cover``, VOT tags).
    """
    name: str
    frames: list[Path]
    boxes: np.ndarray | None = None
    polygons: np.ndarray | None = None
    attributes: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.frames)

    def image(self, i: int) -> np.ndarray:
        """Frame ``i`` as an RGB uint8 array (H x W x 3)."""
        return read_rgb(self.frames[i])

    def sub(self, start: int = 0, stop: int | None = None, step: int = 1) -> "Sequence":
        """Frames ``start:stop:step`` with their boxes, polygons and per-frame attributes."""
        sl = slice(start, stop, step)
        n = len(self.frames)
        attrs = {k: (v[sl] if isinstance(v, np.ndarray) and v.ndim >= 1 and len(v) == n else v)
                 for k, v in self.attributes.items()}
        return replace(self, frames=self.frames[sl],
                       boxes=None if self.boxes is None else self.boxes[sl],
                       polygons=None if self.polygons is None else self.polygons[sl],
                       attributes=attrs)

    def limit(self, max_frames: int | None = None, stride: int = 1) -> "Sequence":
        """Every ``stride``-th frame, at most ``max_frames`` of them (``DataConfig`` semantics)."""
        if stride < 1:
            raise ValueError(f"frame stride must be >= 1, got {stride}")
        out = self.sub(0, None, stride)
        return out if max_frames is None else out.sub(0, max_frames)


class UnlabeledSequence:
    """A view of a ``Sequence`` without its labels: ``boxes`` / ``polygons`` raise ``LabelAccessError``.

    The unsupervised stages (BD, mining, TC) take these, so a test can prove they never read a label.
    Label-derived attributes (``LABEL_ATTRIBUTES``) are dropped too.
    """
    __slots__ = ("_seq",)

    def __init__(self, seq: Sequence):
        object.__setattr__(self, "_seq", seq)

    def __setattr__(self, key, value):
        raise AttributeError("an UnlabeledSequence is read-only")

    @property
    def name(self) -> str:
        return self._seq.name

    @property
    def frames(self) -> list[Path]:
        return list(self._seq.frames)

    @property
    def attributes(self) -> dict[str, Any]:
        return {k: v for k, v in self._seq.attributes.items() if k not in LABEL_ATTRIBUTES}

    @property
    def boxes(self):
        raise LabelAccessError(f"{self.name}: labels are hidden here (an unsupervised stage read boxes)")

    @property
    def polygons(self):
        raise LabelAccessError(f"{self.name}: labels are hidden here (an unsupervised stage read polygons)")

    def __len__(self) -> int:
        return len(self._seq.frames)

    def image(self, i: int) -> np.ndarray:
        return read_rgb(self._seq.frames[i])

    def sub(self, start: int = 0, stop: int | None = None, step: int = 1) -> "UnlabeledSequence":
        return UnlabeledSequence(self._seq.sub(start, stop, step))

    def limit(self, max_frames: int | None = None, stride: int = 1) -> "UnlabeledSequence":
        return UnlabeledSequence(self._seq.limit(max_frames, stride))

    def __repr__(self) -> str:
        return f"UnlabeledSequence({self.name!r}, {len(self)} frames)"


def unlabeled(seq: Sequence | UnlabeledSequence) -> UnlabeledSequence:
    """The label-free view of ``seq`` (idempotent)."""
    return seq if isinstance(seq, UnlabeledSequence) else UnlabeledSequence(seq)


def iter_frames(seq: Sequence | UnlabeledSequence, on_error: str = "raise",
                skipped: list[int] | None = None) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(index, RGB uint8 frame)`` for every frame of ``seq``.

    ``on_error="raise"``: an unreadable frame raises ``ImageError``.  ``"skip"``: it is warned
    about, appended to ``skipped`` (when given) and left out; a final warning gives the count.
    """
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    bad = 0
    for i, path in enumerate(seq.frames):
        try:
            img = read_rgb(path)
        except ImageError as e:
            if on_error == "raise":
                raise
            bad += 1
            if skipped is not None:
                skipped.append(i)
            warnings.warn(f"{seq.name}: skipping frame {i}: {e}", stacklevel=2)
            continue
        yield i, img
    if bad:
        warnings.warn(f"{seq.name}: skipped {bad} of {len(seq.frames)} unreadable frames", stacklevel=2)


# --------------------------------------------------------------------------- shared helpers
def _require_dir(path: Path, what: str) -> Path:
    path = Path(path)
    if path.is_file():
        raise DataError(f"{path}: is a file; expected a folder holding {what}")
    if not path.is_dir():
        raise DataError(f"{path}: no such folder; expected a folder holding {what}")
    return path


def _read_text(path: Path) -> str:
    if not path.is_file():
        raise DataError(f"{path}: missing file")
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None


def _read_list(path: Path) -> list[str]:
    """Names from a ``list.txt``: one per line, blank lines and ``#`` comments ignored."""
    names = [ln.strip() for ln in _read_text(path).splitlines()]
    names = [n for n in names if n and not n.startswith("#")]
    if not names:
        raise DataError(f"{path}: empty sequence list")
    return names


def _select(names: list[str], wanted, where: Path) -> list[str]:
    if wanted is None:
        return names
    wanted = [wanted] if isinstance(wanted, str) else list(wanted)
    missing = [n for n in wanted if n not in names]
    if missing:
        raise DataError(f"{where}: no sequence named {', '.join(missing)}; available: {', '.join(names)}")
    return wanted


def _read_rows(path: Path, widths: tuple[int, ...]) -> list[np.ndarray]:
    """Numbers per line of an annotation file, separated by commas, tabs or spaces.

    Trailing blank lines are ignored; a blank line inside the file, an unparsable token
    (e.g. semicolons) or a line with a count not in ``widths`` is a ``DataError`` naming it.
    """
    lines = _read_text(path).rstrip().splitlines()
    if not lines:
        raise DataError(f"{path}: empty annotation file")
    rows = []
    for k, line in enumerate(lines, start=1):
        text = line.strip()
        if not text:
            raise DataError(f"{path}: blank line {k} inside the annotations (write an absent target as NaN,NaN,NaN,NaN)")
        if text[0] in "mM" and widths == (4, 8):
            raise DataError(f"{path}: line {k}: mask annotations (VOT2020+) are not supported")
        try:
            vals = np.array([float(t) for t in _SEP.split(text.strip(", \t"))], dtype=np.float64)
        except ValueError:
            raise DataError(f"{path}: line {k}: cannot parse {text[:60]!r} "
                            f"(expected {' or '.join(map(str, widths))} numbers separated by commas, tabs or spaces)") from None
        if len(vals) not in widths:
            raise DataError(f"{path}: line {k}: {len(vals)} values, expected {' or '.join(map(str, widths))}")
        rows.append(vals)
    return rows


def _frame_number(p: Path) -> int | None:
    try:
        return int(p.stem)
    except ValueError:
        return None


def _list_frames(folder: Path, exts: tuple[str, ...] = _IMAGE_EXTS) -> list[Path]:
    """Image files named by frame number (``0001.jpg``, ``00000001.jpg``), ordered by that number.

    Every image file must be numbered and the numbers consecutive (a gap would shift every
    later box onto the wrong frame).
    """
    files = [p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in exts and not p.name.startswith(".")]
    if not files:
        raise DataError(f"{folder}: no frames (expected numbered images such as 0001.jpg or 00000001.jpg)")
    numbered = []
    for p in files:
        n = _frame_number(p)
        if n is None:
            raise DataError(f"{p}: frame file name is not a frame number")
        numbered.append((n, p))
    numbered.sort()
    nums = [n for n, _ in numbered]
    if len(set(nums)) != len(nums):
        dup = next(n for n in nums if nums.count(n) > 1)
        raise DataError(f"{folder}: two files for frame {dup}")
    expected = range(nums[0], nums[0] + len(nums))
    if nums != list(expected):
        gap = next(e for e, n in zip(expected, nums) if e != n)
        raise DataError(f"{folder}: frame {gap} is missing (frames numbered {nums[0]}..{nums[-1]}, {len(nums)} files)")
    return [p for _, p in numbered]


def _check_count(frames: list[Path], n_boxes: int, anno: Path, folder: Path) -> None:
    if len(frames) != n_boxes:
        raise DataError(f"{anno}: {n_boxes} boxes but {len(frames)} frames in {folder}")


def _sanitise(boxes: np.ndarray, anno: Path, frame_size: tuple[int, int] | None,
              expected_absent: np.ndarray | None = None) -> tuple[np.ndarray, int]:
    """NaN rows for unusable boxes; one warning per file with the count.

    Unusable: non-finite, width or height <= 0, entirely outside the frame, or wider / taller
    than ``_MAX_BOX_FRAMES`` frame sides.  Rows in ``expected_absent`` are NaN without a warning.
    """
    b = boxes.copy()
    ok = crops.valid_boxes(b)
    if frame_size is not None:
        W, H = frame_size
        with np.errstate(invalid="ignore"):
            ok &= (b[:, 0] + b[:, 2] > 0) & (b[:, 1] + b[:, 3] > 0) & (b[:, 0] < W) & (b[:, 1] < H)
            ok &= (b[:, 2] <= _MAX_BOX_FRAMES * W) & (b[:, 3] <= _MAX_BOX_FRAMES * H)
    absent = np.zeros(len(b), bool) if expected_absent is None else expected_absent.astype(bool)
    bad = ~ok & ~absent
    b[~ok | absent] = np.nan
    n_bad = int(bad.sum())
    if n_bad:
        idx = np.flatnonzero(bad)
        shown = ", ".join(map(str, idx[:8])) + (", ..." if n_bad > 8 else "")
        size = f" or outside the {frame_size[0]}x{frame_size[1]} frame" if frame_size else ""
        warnings.warn(f"{anno}: {n_bad} of {len(b)} boxes unusable (NaN, zero or negative size{size}); "
                      f"frames {shown} marked absent", stacklevel=3)
    return b, n_bad


def _frame_size(frames: list[Path]) -> tuple[int, int]:
    try:
        return image_size(frames[0])
    except ImageError as e:
        raise DataError(str(e)) from None


# --------------------------------------------------------------------------- OTB
def _otb_annotation_files(folder: Path) -> list[Path]:
    """``groundtruth_rect.txt``, or ``groundtruth_rect.1.txt``, ``.2.txt`` ... for several targets."""
    single = folder / "groundtruth_rect.txt"
    if single.is_file():
        return [single]
    multi = sorted(folder.glob("groundtruth_rect.*.txt"), key=lambda p: p.name)
    return [p for p in multi if p.read_bytes().strip()]  # OTB ships an empty Human4 .1 file


def read_otb_sequence(folder: str | Path, target: int | None = None, name: str | None = None) -> Sequence:
    """One OTB sequence: ``<folder>/img/0001.jpg ...`` and ``<folder>/groundtruth_rect.txt``.

    The file holds one 1-based ``x, y, w, h`` per frame, separated by commas, tabs or spaces;
    boxes are converted to 0-based.  A folder with several targets (``groundtruth_rect.1.txt``,
    ``.2.txt``: Jogging, Skating2, Human4) needs ``target`` (1, 2, ...).  The OTB-2015 sequences
    whose ``img`` folder holds more frames than annotated (``OTB_FRAME_RANGES``) are cut to range.
    """
    folder = _require_dir(Path(folder), "an OTB sequence (img/0001.jpg ..., groundtruth_rect.txt)")
    annos = _otb_annotation_files(folder)
    if not annos:
        raise DataError(f"{folder / 'groundtruth_rect.txt'}: missing file (OTB layout: img/0001.jpg ..., groundtruth_rect.txt)")
    if target is None:
        if len(annos) > 1:
            raise DataError(f"{folder}: {len(annos)} targets ({', '.join(p.name for p in annos)}); pass target=1..{len(annos)}")
        anno = annos[0]
    else:
        anno = folder / f"groundtruth_rect.{target}.txt"
        if anno not in annos:
            raise DataError(f"{anno}: missing or empty file")
    img_dir = _require_dir(folder / "img", "OTB frames 0001.jpg ...")
    frames = _list_frames(img_dir)
    first, last = OTB_FRAME_RANGES.get(folder.name.lower(), (None, None))
    if first is not None and len(frames) >= last:
        frames = frames[first - 1:last]
    rows = _read_rows(anno, (4,))
    _check_count(frames, len(rows), anno, img_dir)
    boxes, n_bad = _sanitise(crops.from_one_based(np.stack(rows)), anno, _frame_size(frames))
    seq_name = name or (folder.name if target is None else f"{folder.name}.{target}")
    return Sequence(seq_name, frames, boxes, None, {"dataset": "otb", "unusable_boxes": n_bad})


def read_otb(root: str | Path, names=None) -> list[Sequence]:
    """An OTB root: sequences named in ``<root>/list.txt`` when present, else every subfolder (sorted).

    Multi-target folders become ``<name>.1``, ``<name>.2`` (got10k's naming); ``names`` may use either.
    """
    root = _require_dir(Path(root), "OTB sequences (<seq>/img/0001.jpg, <seq>/groundtruth_rect.txt)")
    lst = root / "list.txt"
    if lst.is_file():
        folders = _read_list(lst)
    else:
        folders = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith((".", "__")))
        if not folders:
            raise DataError(f"{root}: no sequence folders (OTB layout: <seq>/img/0001.jpg, <seq>/groundtruth_rect.txt)")
    entries: dict[str, tuple[str, int | None]] = {}
    for f in folders:
        annos = _otb_annotation_files(root / f) if (root / f).is_dir() else []
        if len(annos) > 1:
            for a in annos:
                k = int(a.name.split(".")[1])
                entries[f"{f}.{k}"] = (f, k)
        else:
            entries[f] = (f, None)
    selected = _select(list(entries), names, root)
    out = []
    for n in selected:
        f, k = entries[n]
        out.append(read_otb_sequence(root / f, target=k, name=n))
    return out


# --------------------------------------------------------------------------- VOT
def _rect_to_polygon(b: np.ndarray) -> np.ndarray:
    x, y, w, h = b
    return np.array([x, y, x + w, y, x + w, y + h, x, y + h], dtype=np.float64)


def read_vot_sequence(folder: str | Path, name: str | None = None) -> Sequence:
    """One VOT sequence: ``00000001.jpg ...`` in ``<folder>`` or ``<folder>/color``, ``groundtruth.txt``.

    Lines hold a 1-based rectangle ``x, y, w, h`` or a rotated box ``x1, y1, ..., x4, y4``.
    ``polygons`` keeps every line as an 8-value 0-based polygon (rectangles as their corners); the box
    is the axis-aligned bounds of the corners (the VOT toolkit's rule), also for a self-intersecting
    polygon.  Per-frame tag files (``*.tag``, ``*.label``) become ``attributes``.
    """
    folder = _require_dir(Path(folder), "a VOT sequence (00000001.jpg ..., groundtruth.txt)")
    anno = folder / "groundtruth.txt"
    if not anno.is_file():
        raise DataError(f"{anno}: missing file (VOT layout: 00000001.jpg ... or color/00000001.jpg ..., groundtruth.txt)")
    img_dir = folder / "color" if (folder / "color").is_dir() else folder
    frames = _list_frames(img_dir)
    rows = _read_rows(anno, (4, 8))
    _check_count(frames, len(rows), anno, img_dir)
    polys = np.stack([r - 1.0 if len(r) == 8 else _rect_to_polygon(crops.from_one_based(r)[0]) for r in rows])
    boxes, n_bad = _sanitise(crops.polygon_to_xywh(polys), anno, _frame_size(frames))
    polys[np.isnan(boxes).any(axis=1)] = np.nan
    attrs: dict[str, Any] = {"dataset": "vot", "unusable_boxes": n_bad}
    for tag in sorted([*folder.glob("*.tag"), *folder.glob("*.label")]):
        attrs[tag.stem] = _read_label(tag, len(frames))
    return Sequence(name or folder.name, frames, boxes, polys, attrs)


def read_vot(root: str | Path, names=None) -> list[Sequence]:
    """A VOT root: ``<root>/list.txt`` (required) names the sequence folders."""
    root = _require_dir(Path(root), "VOT sequences (list.txt, <seq>/groundtruth.txt)")
    lst = root / "list.txt"
    if not lst.is_file():
        raise DataError(f"{lst}: missing file (a VOT root lists its sequences in list.txt)")
    return [read_vot_sequence(root / n) for n in _select(_read_list(lst), names, lst)]


# --------------------------------------------------------------------------- GOT-10k
def _read_label(path: Path, n: int) -> np.ndarray:
    """A per-frame label file (one number per line, e.g. ``absence.label``), length-checked."""
    try:
        vals = np.array([float(t) for t in _read_text(path).split()], dtype=np.float64)
    except ValueError:
        raise DataError(f"{path}: non-numeric label") from None
    if len(vals) != n:
        raise DataError(f"{path}: {len(vals)} labels but {n} frames")
    return vals.astype(np.int64) if np.all(vals == np.round(vals)) else vals


def _read_meta(path: Path) -> dict[str, str]:
    """``meta_info.ini``: a header line, then ``key: value`` lines."""
    meta = {}
    for line in _read_text(path).splitlines()[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            meta[k.strip()] = v.strip()
    return meta


def _parse_resolution(text: str, path: Path) -> tuple[int, int]:
    nums = re.findall(r"\d+", text)
    if len(nums) != 2:
        raise DataError(f"{path}: resolution {text!r} is not '(width, height)'")
    return int(nums[0]), int(nums[1])


def _got10k_split(root: Path, subset: str) -> Path:
    """The split folder: ``<root>/<subset>`` when it holds ``list.txt``; else ``root`` itself when
    ``root/list.txt`` exists (a bare split folder, e.g. one synthetic split)."""
    root = _require_dir(root, f"GOT-10k ({subset}/list.txt, {subset}/<seq>/00000001.jpg, groundtruth.txt)")
    if (root / subset / "list.txt").is_file():
        return root / subset
    if (root / "list.txt").is_file():
        if root.name in ("train", "val", "test") and root.name != subset:
            raise DataError(f"{root}: this is the {root.name!r} split folder, but subset={subset!r} was asked for")
        return root
    raise DataError(f"{root / subset / 'list.txt'}: missing file (GOT-10k layout: <root>/{subset}/list.txt, "
                    f"<root>/{subset}/<seq>/00000001.jpg, groundtruth.txt; or a split folder holding list.txt)")


def _got10k_names(split: Path) -> list[str]:
    """Sequence names through got10k's ``GOT10k`` class for a standard split, else from ``list.txt``."""
    if split.name in ("train", "val", "test"):
        from got10k.datasets import GOT10k

        with contextlib.redirect_stdout(io.StringIO()):  # it prints a warning per missing folder
            try:
                names = GOT10k(str(split.parent), subset=split.name).seq_names
            except Exception as e:  # got10k raises bare Exception / AssertionError
                raise DataError(f"{split / 'list.txt'}: got10k cannot read it ({e})") from None
        names = [n.strip() for n in names if n.strip()]  # it keeps '\r' and blank lines
        if not names:
            raise DataError(f"{split / 'list.txt'}: empty sequence list")
        return names
    return _read_list(split / "list.txt")


def read_got10k_sequence(folder: str | Path, first_frame_only: bool = False, name: str | None = None) -> Sequence:
    """One GOT-10k sequence folder (see ``read_got10k``)."""
    folder = _require_dir(Path(folder), "a GOT-10k sequence (00000001.jpg ..., groundtruth.txt)")
    anno = folder / "groundtruth.txt"
    if not anno.is_file():
        raise DataError(f"{anno}: missing file (GOT-10k layout: 00000001.jpg ..., groundtruth.txt)")
    frames = _list_frames(folder)
    rows = np.stack(_read_rows(anno, (4,)))
    attrs: dict[str, Any] = {"dataset": "got10k"}
    if first_frame_only and len(rows) == 1 and len(frames) > 1:   # the test split
        rows = np.vstack([rows, np.full((len(frames) - 1, 4), np.nan)])
        attrs["first_frame_only"] = True
    _check_count(frames, len(rows), anno, folder)
    for label in ("absence", "cover", "cut_by_image"):
        p = folder / f"{label}.label"
        if p.is_file():
            attrs[label] = _read_label(p, len(frames))
    meta_file = folder / "meta_info.ini"
    if meta_file.is_file():
        attrs["meta"] = _read_meta(meta_file)
        if "resolution" in attrs["meta"]:
            attrs["resolution"] = _parse_resolution(attrs["meta"]["resolution"], meta_file)
    size = attrs.get("resolution") or _frame_size(frames)
    expected_absent = np.zeros(len(rows), bool)
    if "absence" in attrs:
        expected_absent |= attrs["absence"] > 0
    if attrs.get("first_frame_only"):
        expected_absent[1:] = True
    boxes, n_bad = _sanitise(rows, anno, size, expected_absent)
    attrs["unusable_boxes"] = n_bad
    return Sequence(name or folder.name, frames, boxes, None, attrs)


def read_got10k(root: str | Path, subset: str = "val", names=None) -> list[Sequence]:
    """GOT-10k: ``<root>/<subset>/list.txt`` and ``<root>/<subset>/<seq>/`` with ``00000001.jpg ...``,
    ``groundtruth.txt``, ``absence.label``, ``cover.label``, ``meta_info.ini``.

    Box convention: GOT-10k's ``groundtruth.txt`` holds ``left, top, width, height`` per frame in
    0-based pixels (the got10k toolkit scores IoU on them as they are); read unchanged.  Frames with
    ``absence`` = 1 get a NaN row.  ``cover`` (visible ratio in levels 0..8), ``absence``,
    ``cut_by_image`` become per-frame ``attributes``; ``resolution`` is ``(width, height)`` from
    ``meta_info.ini``.  The test split annotates the first frame only: the other rows are NaN.

    Rule for bare split folders: when ``<root>/<subset>/list.txt`` does not exist but
    ``<root>/list.txt`` does, ``root`` is taken as the split folder itself (a folder named ``train``,
    ``val`` or ``test`` must then match ``subset``).
    """
    split = _got10k_split(Path(root), subset)
    all_names = _got10k_names(split)
    for n in all_names:
        if not (split / n).is_dir():
            raise DataError(f"{split / n}: missing sequence folder (named in {split / 'list.txt'})")
    return [read_got10k_sequence(split / n, first_frame_only=(split.name == "test"))
            for n in _select(all_names, names, split / "list.txt")]


# --------------------------------------------------------------------------- ILSVRC-2015 VID
def _xml_objects(path: Path) -> tuple[tuple[int, int] | None, list[tuple[str, np.ndarray, dict]]]:
    """Frame size and ``(trackid, [x, y, w, h], extra)`` of each object in one VID annotation file."""
    try:
        tree = ET.parse(path)
    except (ET.ParseError, OSError) as e:
        raise DataError(f"{path}: malformed annotation XML ({e})") from None
    r = tree.getroot()
    size = None
    if r.find("size/width") is not None and r.find("size/height") is not None:
        size = (int(r.findtext("size/width")), int(r.findtext("size/height")))
    objs = []
    for o in r.findall("object"):
        try:
            tid = o.findtext("trackid").strip()
            x0, y0, x1, y1 = (float(o.findtext(f"bndbox/{k}")) for k in ("xmin", "ymin", "xmax", "ymax"))
        except (AttributeError, TypeError, ValueError):
            raise DataError(f"{path}: an <object> lacks trackid or a numeric bndbox") from None
        # Corners are inclusive 0-based pixel indices: width = xmax - xmin + 1 (got10k's ImageNetVID rule).
        objs.append((tid, np.array([x0, y0, x1 - x0 + 1, y1 - y0 + 1]),
                     {"wnid": o.findtext("name"), "occluded": int(o.findtext("occluded") or 0)}))
    return size, objs


def _vid_snippets(data_dir: Path, limit: int | None) -> list[Path]:
    """Folders holding JPEG frames, in sorted depth-first order, stopping after ``limit``."""
    out: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(data_dir):
        dirnames.sort()
        if any(f.lower().endswith((".jpeg", ".jpg")) for f in filenames):
            out.append(Path(dirpath))
            if limit is not None and len(out) >= limit:
                break
    return out


def read_vid(root: str | Path, subset: str = "train", max_snippets: int | None = None) -> list[Sequence]:
    """ILSVRC-2015 VID: ``<root>/Data/VID/<subset>/.../<snippet>/000000.JPEG`` with one
    ``<root>/Annotations/VID/<subset>/.../<snippet>/000000.xml`` per frame.

    Each track id of a snippet becomes a Sequence named ``<snippet>/<trackid>`` over all the
    snippet's frames, with a NaN row where that track is absent.  ``max_snippets`` keeps the first
    snippets in sorted order.  Boxes: XML corners are inclusive 0-based pixels -> ``[x, y, w, h]``.
    """
    root = _require_dir(Path(root), "ILSVRC-2015 VID (Data/VID/<subset>, Annotations/VID/<subset>)")
    data_dir = root / "Data" / "VID" / subset
    anno_dir = root / "Annotations" / "VID" / subset
    _require_dir(data_dir, f"VID snippets <snippet>/000000.JPEG (under {root}/Data/VID/{subset})")
    _require_dir(anno_dir, f"VID annotations <snippet>/000000.xml (under {root}/Annotations/VID/{subset})")
    snippets = _vid_snippets(data_dir, max_snippets)
    if not snippets:
        raise DataError(f"{data_dir}: no snippets (expected <snippet>/000000.JPEG ...)")
    out: list[Sequence] = []
    for snip in snippets:
        rel = snip.relative_to(data_dir)
        frames = _list_frames(snip, (".jpeg", ".jpg"))
        tracks: dict[str, np.ndarray] = {}
        occluded: dict[str, np.ndarray] = {}
        wnids: dict[str, str] = {}
        size = None
        for f, frame in enumerate(frames):
            xml = anno_dir / rel / (frame.stem + ".xml")
            if not xml.is_file():
                raise DataError(f"{xml}: missing annotation for frame {frame.name}")
            fsize, objs = _xml_objects(xml)
            size = size or fsize
            for tid, box, extra in objs:
                if tid not in tracks:
                    tracks[tid] = np.full((len(frames), 4), np.nan)
                    occluded[tid] = np.zeros(len(frames), np.int64)
                tracks[tid][f] = box
                occluded[tid][f] = extra["occluded"]
                wnids[tid] = extra["wnid"]
        size = size or _frame_size(frames)
        for tid in sorted(tracks, key=lambda t: (len(t), t)):
            present = ~np.isnan(tracks[tid]).all(axis=1)
            boxes, n_bad = _sanitise(tracks[tid], anno_dir / rel, size, ~present)
            out.append(Sequence(f"{snip.name}/{tid}", frames, boxes, None,
                                {"dataset": "vid", "snippet": str(rel), "track_id": tid, "wnid": wnids[tid],
                                 "resolution": size, "absence": (~present).astype(np.int64),
                                 "occluded": occluded[tid], "unusable_boxes": n_bad}))
    return out


# --------------------------------------------------------------------------- bundled sequences
def load_shared(names=None) -> list[Sequence]:
    """The bundled real sequences under ``pulkit.core.paths.shared_sequences()`` (``PULKIT_SHARED``).

    ``names`` like ``"otb/Crossing"`` or ``"vot/bag"`` (default: all of them); each Sequence is named
    that way.  Which may serve as unlabeled training video is set in ``DataConfig.shared_train``.
    """
    root = paths.shared_sequences()
    _require_dir(root, "the bundled sequences otb/ and vot/ (set PULKIT_SHARED)")
    readers = {"otb": read_otb, "vot": read_vot}
    if names is None:
        names = []
        for ds in readers:
            if (root / ds).is_dir():
                lst = root / ds / "list.txt"
                names += [f"{ds}/{n}" for n in (_read_list(lst) if lst.is_file() else
                                                 sorted(p.name for p in (root / ds).iterdir() if p.is_dir()))]
    names = [names] if isinstance(names, str) else list(names)
    out = []
    for full in names:
        ds, _, n = full.partition("/")
        if ds not in readers or not n:
            raise DataError(f"{full!r}: bundled sequence names look like 'otb/<name>' or 'vot/<name>'")
        seq = readers[ds](root / ds, names=[n])[0]
        seq.name = full
        out.append(seq)
    return out
