"""Each got10k 0.1.3 trap, shown failing with got10k as installed, and its workaround working."""
from __future__ import annotations

import contextlib
import importlib
import io
import sys
from pathlib import Path

import cv2
import matplotlib
import numpy as np
import pytest
from got10k.datasets import OTB, GOT10k
from got10k.experiments import ExperimentGOT10k, ExperimentOTB, ExperimentVOT
from got10k.trackers import Tracker
from got10k.utils.metrics import poly_iou as got10k_poly_iou
from got10k.utils.metrics import rect_iou
from shapely.errors import GEOSException

from pulkit.core import paths
from pulkit.evaluation import got10k_compat as compat

BOWTIE = np.array([0, 0, 2, 2, 2, 0, 0, 2], dtype=np.float64)  # self-intersecting: two triangles of area 1


# --------------------------------------------------------------------------- six
def test_missing_six_gives_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "six", None)  # makes `import six` raise ImportError
    with pytest.raises(compat.Got10kSetupError, match=r"pip install six"):
        compat.check_six()


def test_six_present_passes():
    compat.check_six()
    six = importlib.import_module("six")
    # got10k's dataset modules bind this six and index sequences by name through six.string_types
    for name in ("got10k", "otb", "vot"):
        assert importlib.import_module(f"got10k.datasets.{name}").six is six, name
    assert str in six.string_types
    assert tuple(int(p) for p in six.__version__.split(".")[:2]) >= (1, 16)   # pyproject.toml: six>=1.16


# --------------------------------------------------------------------------- numpy 2
def test_numpy_nan_alias_is_scoped():
    had = "NaN" in np.__dict__
    with compat.numpy_nan_alias():
        assert np.isnan(np.NaN)
    assert ("NaN" in np.__dict__) == had
    if not had:  # numpy 2: the alias is gone again
        with pytest.raises(AttributeError):
            np.NaN  # noqa: B018


def test_got10k_calc_iou_is_ragged_and_fixed(tmp_path):
    boxes = [[1.0], [1.0, 1.0, 2.0, 2.0], [2.0], [0.0]]
    anno = np.array([[1.0, 1.0, 2.0, 2.0]] * 4)
    exp = compat.ExperimentVOTLocal(_vot_fixture(tmp_path), version=2016, experiments="supervised")
    if np.lib.NumpyVersion(np.__version__) >= "1.24.0":
        with pytest.raises((ValueError, AttributeError)), compat.numpy_nan_alias():
            ExperimentVOT._calc_iou(exp, boxes, anno, bound=(10, 10))
    ious = exp._calc_iou(boxes, anno, bound=(10, 10))
    assert ious.shape == (4,) and ious.dtype == np.float64
    assert np.isnan(ious[[0, 2, 3]]).all() and ious[1] == pytest.approx(1.0)
    burn = exp._calc_iou(boxes, anno, bound=(10, 10), burnin=True)
    assert np.isnan(burn).all()  # the init frame and the following frames are burn-in


# --------------------------------------------------------------------------- overlaps
def test_got10k_poly_iou_raises_on_bowtie_and_ours_repairs_it():
    box = np.array([0, 0, 2, 2], dtype=np.float64)
    with pytest.raises(GEOSException):
        got10k_poly_iou(BOWTIE, box)
    first = compat.poly_iou(BOWTIE, box)
    assert first == pytest.approx(0.5)  # both lobes kept: area 2 of the 2 x 2 box
    # lobes (0,0)-(1,1)-(0,2) and (2,0)-(1,1)-(2,2): [0,1]^2 holds area 1/2 of the left one, [1,2]x[0,2] the right one
    assert compat.poly_iou(BOWTIE, [0, 0, 1, 1]) == pytest.approx(0.5 / (2 + 1 - 0.5))
    assert compat.poly_iou([1, 0, 1, 2], BOWTIE) == pytest.approx(1 / (2 + 2 - 1))
    assert compat.poly_iou(box, BOWTIE, bound=(1, 2)) == pytest.approx(0.5)  # left lobe (area 1) of [0,1]x[0,2]
    assert compat.region_polygon(BOWTIE).is_valid


def test_poly_iou_matches_got10k_on_valid_regions():
    rng = np.random.default_rng(0)
    for _ in range(20):
        c = rng.uniform(20, 80, 2)
        a = rng.uniform(0, np.pi)
        w, h = rng.uniform(5, 30, 2)
        R = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
        corners = (np.array([[-w, -h], [w, -h], [w, h], [-w, h]]) / 2) @ R.T + c
        poly = corners.ravel()
        box = np.r_[rng.uniform(10, 70, 2), rng.uniform(5, 40, 2)]
        for bound in (None, (90, 85)):
            assert compat.poly_iou(poly, box, bound) == pytest.approx(float(got10k_poly_iou(poly, box, bound)[0]), abs=1e-12)


def test_region_polygon_edge_cases():
    assert compat.region_polygon([np.nan, 0, 1, 1]) is None
    assert np.isnan(compat.poly_iou([np.nan] * 8, [0, 0, 1, 1]))
    assert compat.region_polygon([0, 0, 0, 5]).area == 0
    assert compat.poly_iou([0, 0, 0, 5], [0, 0, 1, 1]) == 0.0
    with pytest.raises(ValueError, match="4 values"):
        compat.region_polygon([0, 0, 1, 1, 2])


def test_rect_iou_bounded_leaves_inputs_alone():
    a = np.array([[-5.0, -5.0, 20.0, 20.0]])
    b = np.array([[0.0, 0.0, 10.0, 10.0]])
    a0 = a.copy()
    iou = compat.rect_iou_bounded(a, b, bound=(12, 12))
    np.testing.assert_array_equal(a, a0)
    rect_iou(a, b, bound=(12, 12))  # got10k's own clips `a` in place
    assert not np.array_equal(a, a0)
    assert iou == pytest.approx(100 / 144)


# --------------------------------------------------------------------------- OTB
def test_experiment_otb_local_has_the_parents_attributes(tmp_path):
    root = tmp_path / "otb"
    for name in OTB._OTB__version_dict[2015]:  # every official folder present: the parent skips its download
        (root / name).mkdir(parents=True)
    with contextlib.redirect_stdout(io.StringIO()):
        parent = ExperimentOTB(str(root), 2015, result_dir=str(tmp_path / "r"), report_dir=str(tmp_path / "p"))
    ours = compat.ExperimentOTBLocal(root, 2015, result_dir=str(tmp_path / "r"), report_dir=str(tmp_path / "p"))
    pv, ov = vars(parent), vars(ours)
    assert set(pv) == set(ov)
    assert {k: v for k, v in pv.items() if k != "dataset"} == {k: v for k, v in ov.items() if k != "dataset"}
    assert ours.dataset.seq_names == parent.dataset.seq_names == []


def test_experiment_otb_local_reads_shared_sequences_without_download(tmp_path):
    exp = compat.ExperimentOTBLocal(paths.shared_sequences() / "otb")
    assert exp.dataset.seq_names == ["Crossing", "Deer", "Skating1"]
    metrics_only = compat.ExperimentOTBLocal()
    assert metrics_only.dataset is None and metrics_only.nbins_iou == 21


def test_otb_dataset_ignores_unofficial_names(tmp_path):
    seq = tmp_path / "otb" / "MyVideo"
    (seq / "img").mkdir(parents=True)
    cv2.imwrite(str(seq / "img" / "0001.jpg"), np.zeros((8, 8, 3), np.uint8))
    (seq / "groundtruth_rect.txt").write_text("1,1,4,4\n")
    with contextlib.redirect_stdout(io.StringIO()):
        assert compat.ExperimentOTBLocal(tmp_path / "otb").dataset.seq_names == []


# --------------------------------------------------------------------------- VOT
def _vot_fixture(root: Path, n: int = 25) -> Path:
    """A one-sequence VOT root: frame f is uniform grey 10 + 5 f, a static 1-based box (31, 21, 40, 30)."""
    seq = root / "vot" / "grey"
    seq.mkdir(parents=True)
    for f in range(n):
        cv2.imwrite(str(seq / f"{f + 1:08d}.jpg"), np.full((80, 120, 3), 10 + 5 * f, np.uint8))
    (seq / "groundtruth.txt").write_text("31,21,40,30\n" * n)
    (root / "vot" / "list.txt").write_text("grey\n")
    return root / "vot"


class _Jumper(Tracker):
    """Returns the initial box, except far off (overlap 0) on the frames in ``fail_at``."""

    def __init__(self, fail_at):
        super().__init__("Jumper", is_deterministic=True)
        self.fail_at = set(fail_at)

    def init(self, image, box):
        self.box = np.asarray(box, dtype=np.float64)

    def update(self, image):
        f = int(round((np.asarray(image, dtype=np.float64).mean() - 10) / 5))
        return self.box + ([100.0, 0, 0, 0] if f in self.fail_at else 0.0)


def test_experiment_vot_local_has_the_parents_attributes(tmp_path):
    root = _vot_fixture(tmp_path)  # list.txt and its folder exist: the parent skips its download
    with contextlib.redirect_stdout(io.StringIO()):
        parent = ExperimentVOT(str(root), 2016, experiments="supervised", result_dir=str(tmp_path / "r"))
    ours = compat.ExperimentVOTLocal(root, 2016, experiments="supervised", result_dir=str(tmp_path / "r"))
    pv, ov = vars(parent), vars(ours)
    assert set(pv) == set(ov)
    assert {k: v for k, v in pv.items() if k != "dataset"} == {k: v for k, v in ov.items() if k != "dataset"}


def test_experiment_vot_crashes_as_installed_and_runs_with_the_fixes(tmp_path):
    root = _vot_fixture(tmp_path)
    tracker = _Jumper(fail_at={4})
    had_nan = "NaN" in np.__dict__
    with contextlib.redirect_stdout(io.StringIO()):
        plain = ExperimentVOT(str(root), 2016, experiments="supervised",
                              result_dir=str(tmp_path / "plain"), report_dir=str(tmp_path / "plain_rep"))
        if "NaN" not in np.__dict__:
            with pytest.raises(AttributeError, match="NaN"):
                plain.run(tracker)  # np.NaN at the first skipped frame
        exp = compat.ExperimentVOTLocal(root, 2016, experiments="supervised",
                                        result_dir=str(tmp_path / "r"), report_dir=str(tmp_path / "rep"))
        exp.run(tracker)
        perf = exp.report([tracker.name])[tracker.name]
    assert ("NaN" in np.__dict__) == had_nan  # the alias is removed again
    record = (tmp_path / "r" / "VOT2016" / "Jumper" / "baseline" / "grey" / "grey_001.txt").read_text().split("\n")
    assert record[0] == "1" and record[4] == "2" and record[5:9] == ["0"] * 4 and record[9] == "1"
    assert perf["robustness"] == 1  # got10k's "robustness" is the failure count
    assert perf["accuracy"] == pytest.approx(1.0)  # frames 19..24: the rest is burn-in


# --------------------------------------------------------------------------- GOT-10k
def _got10k_fixture(root: Path, subset: str = "val", cut_by_image: bool = True, n: int = 4) -> Path:
    split = root / subset
    split.mkdir(parents=True)
    (split / "list.txt").write_text("GOT-10k_Val_000001\r\n")
    seq = split / "GOT-10k_Val_000001"
    seq.mkdir()
    for f in range(n):
        cv2.imwrite(str(seq / f"{f + 1:08d}.jpg"), np.zeros((48, 64, 3), np.uint8))
    (seq / "groundtruth.txt").write_text("10,10,20,20\n" * n)
    (seq / "cover.label").write_text("8\n" * n)
    (seq / "absence.label").write_text("0\n" * n)
    if cut_by_image:
        (seq / "cut_by_image.label").write_text("0\n" * n)
    (seq / "meta_info.ini").write_text("[METAINFO]\nurl: http://example.com/a: b\nresolution: (64, 48)\nnot a pair\n")
    return root


def test_got10k_dataset_traps_and_local_dataset(tmp_path):
    root = _got10k_fixture(tmp_path, cut_by_image=False)
    ours = compat.GOT10kLocal(root, subset="val", return_meta=True)
    assert ours.seq_names == ["GOT-10k_Val_000001"]
    img_files, anno, meta = ours["GOT-10k_Val_000001"]
    assert len(img_files) == 4 and anno.shape == (4, 4)
    assert meta["resolution"] == "(64, 48)" and meta["url"] == "http://example.com/a: b"
    assert "cut_by_image" not in meta and meta["cover"].tolist() == [8] * 4
    with pytest.raises(IndexError):
        GOT10k._fetch_meta(ours, ours.seq_dirs[0])  # got10k's own: a line without ": "
    meta_file = Path(ours.seq_dirs[0]) / "meta_info.ini"
    meta_file.write_text("[METAINFO]\nresolution: (64, 48)\n")
    with pytest.raises(FileNotFoundError, match="cut_by_image"):
        GOT10k._fetch_meta(ours, ours.seq_dirs[0])  # ... and every label file


def test_got10k_local_reads_bare_split_and_falls_back_on_resolution(tmp_path):
    root = _got10k_fixture(tmp_path)
    split = root / "val"
    seq = split / "GOT-10k_Val_000001"
    (seq / "meta_info.ini").write_text("[METAINFO]\nurl: x\n")
    ds = compat.GOT10kLocal(split, subset="val", return_meta=True)  # the split folder itself
    assert ds[0][2]["resolution"] == "(64, 48)"  # from the first frame
    (seq / "cover.label").unlink()
    with pytest.raises(FileNotFoundError, match="cover.label"):
        ds[0]
    (seq / "cover.label").write_text("8\n8\n")
    with pytest.raises(ValueError, match="2 values for 4 frames"):
        ds[0]
    with pytest.raises(FileNotFoundError, match="list.txt"):
        compat.GOT10kLocal(tmp_path / "nowhere", subset="val")


def test_experiment_got10k_local_has_the_parents_attributes(tmp_path):
    root = _got10k_fixture(tmp_path)
    with contextlib.redirect_stdout(io.StringIO()):
        parent = ExperimentGOT10k(str(root), subset="val", result_dir=str(tmp_path / "r"), report_dir=str(tmp_path / "p"))
    ours = compat.ExperimentGOT10kLocal(root, subset="val", result_dir=str(tmp_path / "r"), report_dir=str(tmp_path / "p"))
    pv, ov = vars(parent), vars(ours)
    assert set(pv) == set(ov)
    assert {k: v for k, v in pv.items() if k != "dataset"} == {k: v for k, v in ov.items() if k != "dataset"}
    assert isinstance(ours.dataset, compat.GOT10kLocal)


def test_report_changes_matplotlib_font_size(tmp_path):
    """Why pulkit never calls got10k's report(): it sets rcParams['font.size'] globally."""
    root = _got10k_fixture(tmp_path)

    class Still(Tracker):
        def __init__(self):
            super().__init__("Still", is_deterministic=True)

        def init(self, image, box):
            self.box = box

        def update(self, image):
            return self.box

    with matplotlib.rc_context({"font.size": 13.0}), contextlib.redirect_stdout(io.StringIO()):
        exp = compat.ExperimentGOT10kLocal(root, result_dir=str(tmp_path / "r"), report_dir=str(tmp_path / "p"))
        exp.run(Still())
        exp.report(["Still"])
        assert matplotlib.rcParams["font.size"] == 9.0
