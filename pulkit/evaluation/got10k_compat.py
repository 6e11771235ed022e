"""Everything got10k 0.1.3 (the PyPI release) needs to run here, in one small tested module.

Every got10k import in pulkit goes through this module, so the evaluation protocols run offline on
current numpy and shapely.  The traps and their workarounds: docs/modules.md.
"""
from __future__ import annotations

import ast
import contextlib
import io
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np

GOT10K_TESTED_VERSION = "0.1.3"


class Got10kSetupError(ImportError):
    """got10k cannot be imported as installed (the message says what to install)."""


def check_six() -> None:
    """Fail clearly when ``six`` is missing: got10k's dataset modules import it without declaring it."""
    try:
        import six  # noqa: F401
    except ImportError:
        raise Got10kSetupError(
            "got10k 0.1.3 imports `six` in every dataset module but does not declare it as a "
            "dependency: install it into the environment (`pip install six`)") from None


check_six()

import shapely  # noqa: E402
from got10k.datasets import OTB, VOT, GOT10k  # noqa: E402
from got10k.experiments import ExperimentGOT10k, ExperimentOTB, ExperimentVOT  # noqa: E402
from got10k.utils.metrics import center_error, rect_iou  # noqa: E402,F401
from shapely.geometry import MultiPolygon, Polygon  # noqa: E402
from shapely.geometry import box as shapely_box


# --------------------------------------------------------------------------- numpy 2
@contextmanager
def numpy_nan_alias() -> Iterator[None]:
    """Make ``np.NaN`` exist (as ``np.nan``) inside the block only; numpy 2 removed it.

    got10k's ``ExperimentVOT`` writes ``np.NaN`` for skipped frames' times; this alias is set
    here and nowhere else, and removed on exit when numpy did not have it before.
    """
    had = "NaN" in np.__dict__
    if not had:
        np.NaN = np.nan
    try:
        yield
    finally:
        if not had:
            del np.NaN


# --------------------------------------------------------------------------- overlaps
def region_polygon(region):
    """A VOT region as a valid shapely geometry, or None when it has non-finite values.

    ``region`` is ``[x, y, w, h]`` (the rectangle ``[x, x + w] x [y, y + h]``) or ``2k`` corner
    coordinates ``x1, y1, x2, y2, ...``.  A self-intersecting polygon (a "bow-tie") is repaired
    deterministically with ``shapely.make_valid``, which keeps both lobes, i.e. the area VOT's
    rasterised overlap fills; non-polygonal leftovers (lines, points) are dropped.  A degenerate
    region (zero width, collinear corners) becomes an empty polygon (area 0).
    """
    v = np.asarray(region, dtype=np.float64).ravel()
    if not np.isfinite(v).all():
        return None
    if v.size == 4:
        x, y, w, h = v
        return shapely_box(x, y, x + w, y + h) if w > 0 and h > 0 else Polygon()
    if v.size < 6 or v.size % 2:
        raise ValueError(f"a region has 4 values (x, y, w, h) or 2k >= 6 corner coordinates, got {v.size}")
    poly = Polygon(v.reshape(-1, 2))
    if poly.is_valid:
        return poly
    fixed = shapely.make_valid(poly)
    parts = [g for g in getattr(fixed, "geoms", [fixed]) if isinstance(g, (Polygon, MultiPolygon)) and not g.is_empty]
    return shapely.unary_union(parts) if parts else Polygon()


def poly_iou(region1, region2, bound=None) -> float:
    """IoU of two regions (see ``region_polygon``), both clipped to ``bound`` = (width, height).

    got10k's ``poly_iou`` with repaired polygons: ``bound`` clips to ``[0, width] x [0, height]``.
    NaN when either region is non-finite; 0 when the union is empty.
    """
    p1, p2 = region_polygon(region1), region_polygon(region2)
    if p1 is None or p2 is None:
        return float("nan")
    if bound is not None:
        frame = shapely_box(0.0, 0.0, float(bound[0]), float(bound[1]))
        p1, p2 = p1.intersection(frame), p2.intersection(frame)
    inter = p1.intersection(p2).area
    union = p1.union(p2).area
    return float(np.clip(inter / (union + np.finfo(float).eps), 0.0, 1.0))


def rect_iou_bounded(rects1, rects2, bound) -> np.ndarray:
    """got10k's ``rect_iou(..., bound=bound)`` on copies (got10k clips its inputs in place)."""
    return rect_iou(np.array(rects1, dtype=np.float64), np.array(rects2, dtype=np.float64), bound=bound)


# --------------------------------------------------------------------------- OTB
class ExperimentOTBLocal(ExperimentOTB):
    """``ExperimentOTB`` that never downloads.

    ``root_dir=None`` builds no dataset: the instance then serves for got10k's metric methods
    (``_calc_metrics``, ``_calc_curves``) on any sequences.  Otherwise ``OTB(root_dir, version,
    download=False)``: note that got10k's ``OTB`` only lists folders named in the official list of
    ``version``.  The attributes are those ``ExperimentOTB.__init__`` sets (a test checks it).
    """

    def __init__(self, root_dir=None, version=2015, result_dir="results", report_dir="reports"):
        # not super().__init__: it would build OTB(root_dir, version, download=True)
        self.dataset = None
        if root_dir is not None:
            with contextlib.redirect_stdout(io.StringIO()):  # one "Warning" line per absent official sequence
                self.dataset = OTB(str(root_dir), version, download=False)
        self.result_dir = os.path.join(result_dir, "OTB" + str(version))
        self.report_dir = os.path.join(report_dir, "OTB" + str(version))
        self.nbins_iou = 21
        self.nbins_ce = 51


# --------------------------------------------------------------------------- VOT
class ExperimentVOTLocal(ExperimentVOT):
    """``ExperimentVOT`` that never downloads and runs on numpy 2.

    ``run_supervised`` / ``run_realtime`` run inside ``numpy_nan_alias``; ``_calc_iou`` returns
    one float per frame (got10k's builds a ragged array) and uses the repaired ``poly_iou``.  The
    run loops still call got10k's own ``poly_iou`` for the failure test, which raises on a
    self-intersecting ground-truth polygon: pulkit's protocol (``pulkit.evaluation``) does not.
    got10k reports accuracy, failures and speed, no EAO.
    """

    def __init__(self, root_dir, version=2017, read_image=True,
                 experiments=("supervised", "unsupervised", "realtime"),
                 result_dir="results", report_dir="reports"):
        # not super().__init__: it would build VOT(..., download=True)
        if isinstance(experiments, str):
            experiments = (experiments,)
        assert all(e in ["supervised", "unsupervised", "realtime"] for e in experiments)
        self.dataset = VOT(str(root_dir), version, anno_type="default", download=False, return_meta=True)
        self.experiments = experiments
        if version == "LT2018":
            version = "-" + version
        self.read_image = read_image
        self.result_dir = os.path.join(result_dir, "VOT" + str(version))
        self.report_dir = os.path.join(report_dir, "VOT" + str(version))
        self.skip_initialize = 5
        self.burnin = 10
        self.repetitions = 15
        self.sensitive = 100
        self.nbins_eao = 1500
        self.tags = ["camera_motion", "illum_change", "occlusion", "size_change", "motion_change", "empty"]

    def run_supervised(self, tracker, visualize=False):
        with numpy_nan_alias():
            return super().run_supervised(tracker, visualize)

    def run_realtime(self, tracker, visualize=False):
        with numpy_nan_alias():
            return super().run_realtime(tracker, visualize)

    def _calc_iou(self, boxes, anno, bound, burnin=False):
        if burnin:
            boxes = list(boxes)
            for ind in [i for i, b in enumerate(boxes) if b == [1.0]]:
                boxes[ind:ind + self.burnin] = [[0]] * self.burnin
        return np.array([poly_iou(np.array(b), a, bound) if len(b) > 1 else np.nan
                         for b, a in zip(boxes, anno)], dtype=np.float64)


# --------------------------------------------------------------------------- GOT-10k
def got10k_split_dir(root_dir, subset: str) -> Path:
    """``<root>/<subset>`` when it holds ``list.txt``, else ``root`` itself when it does (a bare
    split folder such as a synthetic split; ``pulkit.data.sequences.read_got10k``'s rule)."""
    root = Path(root_dir)
    if (root / subset / "list.txt").is_file():
        return root / subset
    if (root / "list.txt").is_file():
        return root
    raise FileNotFoundError(f"{root / subset / 'list.txt'}: missing (GOT-10k layout: <root>/{subset}/list.txt, "
                            f"<root>/{subset}/<seq>/00000001.jpg, groundtruth.txt, cover.label, meta_info.ini)")


class GOT10kLocal(GOT10k):
    """``GOT10k`` that reads a bare split folder too and whose meta reading needs only what
    evaluation uses.

    The split is ``<root>/<subset>`` or ``root`` itself (``got10k_split_dir``); blank lines of
    ``list.txt`` are skipped and a listed folder must exist.
    ``meta_info.ini``: its first line is a header, then ``key: value`` lines (lines without
    ``": "`` are skipped, values may contain ``": "``).  ``resolution`` (``(width, height)``)
    falls back to the first frame's size when absent.  Label files: ``cover.label`` is required
    (GOT-10k val scores only frames with ``cover > 0``); ``absence.label`` and
    ``cut_by_image.label`` are loaded when present.  Each label file must have one value per frame.
    """

    def __init__(self, root_dir, subset="val", return_meta=False):
        # not super().__init__: it requires <root>/<subset>/list.txt
        assert subset in ["train", "val", "test"], "Unknown subset."
        split = got10k_split_dir(root_dir, subset)
        self.root_dir = str(root_dir)
        self.subset = subset
        self.return_meta = False if subset == "test" else return_meta
        self.seq_names = [n.strip() for n in (split / "list.txt").read_text().splitlines() if n.strip()]
        self.seq_dirs = [str(split / s) for s in self.seq_names]
        for d in self.seq_dirs:
            if not os.path.isdir(d):
                raise FileNotFoundError(f"{d}: missing sequence folder (named in {split / 'list.txt'})")
        self.anno_files = [os.path.join(d, "groundtruth.txt") for d in self.seq_dirs]

    def _fetch_meta(self, seq_dir):
        seq_dir = Path(seq_dir)
        meta_file = seq_dir / "meta_info.ini"
        meta: dict = {}
        if meta_file.is_file():
            for line in meta_file.read_text().splitlines()[1:]:
                if ": " in line:
                    k, v = line.split(": ", 1)
                    meta[k.strip()] = v.strip()
        n = len(list(seq_dir.glob("*.jpg")))
        if "resolution" not in meta:
            from PIL import Image

            first = sorted(seq_dir.glob("*.jpg"))
            if not first:
                raise FileNotFoundError(f"{seq_dir}: no *.jpg frames")
            with Image.open(first[0]) as im:
                meta["resolution"] = str(tuple(im.size))
        try:
            w, h = ast.literal_eval(meta["resolution"])
            meta["resolution"] = str((int(w), int(h)))
        except (ValueError, SyntaxError, TypeError):
            raise ValueError(f"{meta_file}: resolution {meta['resolution']!r} is not '(width, height)'") from None
        for att in ("cover", "absence", "cut_by_image"):
            f = seq_dir / f"{att}.label"
            if not f.is_file():
                if att == "cover":
                    raise FileNotFoundError(f"{f}: missing; GOT-10k evaluation scores only frames with cover > 0")
                continue
            values = np.atleast_1d(np.loadtxt(f, ndmin=1))
            if len(values) != n:
                raise ValueError(f"{f}: {len(values)} values for {n} frames")
            meta[att] = values
        return meta


class ExperimentGOT10kLocal(ExperimentGOT10k):
    """``ExperimentGOT10k`` on ``GOT10kLocal`` (see there); the attributes are those
    ``ExperimentGOT10k.__init__`` sets (a test checks it); everything else is got10k's."""

    def __init__(self, root_dir, subset="val", result_dir="results", report_dir="reports"):
        # not super().__init__: its GOT10k needs <root>/<subset>/list.txt
        assert subset in ["val", "test"]
        self.subset = subset
        self.dataset = GOT10kLocal(root_dir, subset=subset)
        self.result_dir = os.path.join(result_dir, "GOT-10k")
        self.report_dir = os.path.join(report_dir, "GOT-10k")
        self.nbins_iou = 101
        self.repetitions = 3
