"""Readers: the bundled sequences, generated GOT-10k / VID / OTB / VOT fixtures, unlabeled views, bad input."""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

from pulkit.data import crops
from pulkit.data.images import ImageError
from pulkit.data.sequences import (
    DataError,
    LabelAccessError,
    Sequence,
    iter_frames,
    load_shared,
    read_got10k,
    read_otb,
    read_otb_sequence,
    read_vid,
    read_vot,
    read_vot_sequence,
    unlabeled,
)

EXPECTED_FRAMES = {"otb/Crossing": 120, "otb/Deer": 71, "otb/Skating1": 400, "vot/bag": 196, "vot/ball1": 105}


def _file_rows(path: Path) -> np.ndarray:
    return np.array([[float(v) for v in ln.replace("\t", ",").split(",")] for ln in path.read_text().split()])


# --------------------------------------------------------------------------- bundled sequences
def test_shared_sequences_frame_counts_and_names(shared_root):
    seqs = load_shared()
    assert {s.name: len(s) for s in seqs} == EXPECTED_FRAMES
    for s in seqs:
        assert s.boxes.shape == (len(s), 4) and s.boxes.dtype == np.float64
        assert all(p.is_file() for p in (s.frames[0], s.frames[-1]))


@pytest.mark.parametrize("name", ["otb/Crossing", "otb/Deer", "otb/Skating1"])
def test_shared_otb_first_and_last_boxes_are_0_based(shared_root, name):
    (seq,) = load_shared([name])
    rows = _file_rows(shared_root / name / "groundtruth_rect.txt")
    np.testing.assert_array_equal(seq.boxes[[0, -1]], rows[[0, -1]] - [1, 1, 0, 0])
    assert seq.frames[0].name == "0001.jpg" and seq.image(0).ndim == 3


@pytest.mark.parametrize("name", ["vot/bag", "vot/ball1"])
def test_shared_vot_polygons_and_bounds(shared_root, name):
    (seq,) = load_shared([name])
    rows = _file_rows(shared_root / name / "groundtruth.txt")
    assert rows.shape[1] == 8
    for i in (0, -1):
        poly = rows[i] - 1.0
        np.testing.assert_allclose(seq.polygons[i], poly)
        xs, ys = poly[0::2], poly[1::2]
        np.testing.assert_allclose(seq.boxes[i], [xs.min(), ys.min(), xs.max() - xs.min(), ys.max() - ys.min()])


def test_load_shared_rejects_bad_names(shared_root):
    with pytest.raises(DataError, match="otb/<name>"):
        load_shared(["Crossing"])
    with pytest.raises(DataError, match="Nope"):
        load_shared(["otb/Nope"])


def test_missing_shared_root_names_the_variable(tmp_path, monkeypatch):
    monkeypatch.setenv("PULKIT_SHARED", str(tmp_path / "absent"))
    with pytest.raises(DataError, match="PULKIT_SHARED"):
        load_shared()


# --------------------------------------------------------------------------- OTB / VOT fixtures
@pytest.mark.parametrize("sep", [",", "\t", " "])
def test_otb_separators_and_one_based_conversion(tmp_path, make_otb, sep):
    make_otb(tmp_path, "Toy", [[11, 6, 20, 10], [12, 7, 20, 10]], sep=sep)
    (seq,) = read_otb(tmp_path)
    assert seq.name == "Toy"
    np.testing.assert_array_equal(seq.boxes, [[10, 5, 20, 10], [11, 6, 20, 10]])


def test_otb_list_txt_orders_and_selects(tmp_path, make_otb):
    for n in ("A", "B", "C"):
        make_otb(tmp_path, n, [[1, 1, 5, 5]])
    (tmp_path / "list.txt").write_text("C\nA\n")
    assert [s.name for s in read_otb(tmp_path)] == ["C", "A"]
    assert [s.name for s in read_otb(tmp_path, names=["A"])] == ["A"]
    with pytest.raises(DataError, match="B"):
        read_otb(tmp_path, names=["B"])


def test_otb_multi_target_folder(tmp_path, write_frames):
    folder = tmp_path / "Jogging"
    write_frames(folder / "img", 2, "{:04d}.jpg")
    (folder / "groundtruth_rect.1.txt").write_text("1,1,5,5\n2,2,5,5\n")
    (folder / "groundtruth_rect.2.txt").write_text("9,9,4,4\n9,9,4,4\n")
    seqs = read_otb(tmp_path)
    assert [s.name for s in seqs] == ["Jogging.1", "Jogging.2"]
    np.testing.assert_array_equal(seqs[1].boxes[0], [8, 8, 4, 4])
    with pytest.raises(DataError, match="target"):
        read_otb_sequence(folder)


def test_vot_rectangles_and_color_folder(tmp_path, make_vot):
    make_vot(tmp_path, "rect", [[11, 6, 20, 10], [12, 7, 20, 10]], color=True)
    (seq,) = read_vot(tmp_path)
    np.testing.assert_array_equal(seq.boxes, [[10, 5, 20, 10], [11, 6, 20, 10]])
    np.testing.assert_array_equal(seq.polygons[0], [10, 5, 30, 5, 30, 15, 10, 15])
    assert seq.frames[0].parent.name == "color"


def test_vot_missing_list_names_it(tmp_path, make_vot):
    make_vot(tmp_path, "s", [[1, 1, 5, 5]])
    (tmp_path / "list.txt").unlink()
    with pytest.raises(DataError, match="list.txt"):
        read_vot(tmp_path)


def test_vot_tag_files_become_attributes(tmp_path, make_vot):
    folder = make_vot(tmp_path, "s", [[1, 1, 5, 5]] * 3)
    (folder / "occlusion.tag").write_text("0\n1\n0\n")
    seq = read_vot_sequence(folder)
    np.testing.assert_array_equal(seq.attributes["occlusion"], [0, 1, 0])
    assert seq.sub(1, 2).attributes["occlusion"].tolist() == [1]


# --------------------------------------------------------------------------- GOT-10k
def test_got10k_layout_through_got10k(tmp_path, make_got10k):
    boxes = [[3, 4, 10, 8], [4, 4, 10, 8], [5, 5, 9, 9]]
    make_got10k(tmp_path / "val", "GOT-10k_Val_000001", boxes, absence=[0, 1, 0], cover=[8, 0, 5])
    make_got10k(tmp_path / "val", "GOT-10k_Val_000002", boxes[:2])
    seqs = read_got10k(tmp_path, "val")
    assert [s.name for s in seqs] == ["GOT-10k_Val_000001", "GOT-10k_Val_000002"]
    s = seqs[0]
    np.testing.assert_array_equal(s.boxes[[0, 2]], [boxes[0], boxes[2]])  # 0-based as written
    assert np.isnan(s.boxes[1]).all()                                       # absent -> NaN, no warning
    assert s.attributes["cover"].tolist() == [8, 0, 5] and s.attributes["absence"].tolist() == [0, 1, 0]
    assert s.attributes["resolution"] == (48, 32) and s.attributes["unusable_boxes"] == 0
    assert [x.name for x in read_got10k(tmp_path, "val", names=["GOT-10k_Val_000002"])] == ["GOT-10k_Val_000002"]


def test_got10k_bare_split_folder(tmp_path, make_got10k):
    make_got10k(tmp_path / "mysplit", "a", [[1, 1, 5, 5]] * 2)
    (seq,) = read_got10k(tmp_path / "mysplit", subset="val")
    assert seq.name == "a" and len(seq) == 2
    make_got10k(tmp_path / "val", "b", [[1, 1, 5, 5]])
    assert [s.name for s in read_got10k(tmp_path / "val", subset="val")] == ["b"]
    with pytest.raises(DataError, match="'val' split folder, but subset='train'"):
        read_got10k(tmp_path / "val", subset="train")


def test_got10k_test_split_has_first_box_only(tmp_path, write_frames):
    folder = tmp_path / "test" / "GOT-10k_Test_000001"
    write_frames(folder, 4)
    (folder / "groundtruth.txt").write_text("2,3,10,12\n")
    (tmp_path / "test" / "list.txt").write_text("GOT-10k_Test_000001\n")
    (seq,) = read_got10k(tmp_path, "test")
    np.testing.assert_array_equal(seq.boxes[0], [2, 3, 10, 12])
    assert np.isnan(seq.boxes[1:]).all() and seq.attributes["first_frame_only"]


def test_got10k_missing_split_names_layout(tmp_path):
    with pytest.raises(DataError, match=r"val[/\\]list.txt.*GOT-10k layout"):
        read_got10k(tmp_path, "val")


def test_got10k_missing_sequence_folder(tmp_path, make_got10k):
    make_got10k(tmp_path / "val", "a", [[1, 1, 5, 5]])
    (tmp_path / "val" / "list.txt").write_text("a\nghost\n")
    with pytest.raises(DataError, match="ghost"):
        read_got10k(tmp_path, "val")


# --------------------------------------------------------------------------- ILSVRC-2015 VID
def _vid_xml(objs, size=(64, 48)) -> str:
    body = "".join(f"<object><trackid>{t}</trackid><name>n0</name><bndbox><xmax>{x1}</xmax><xmin>{x0}</xmin>"
                   f"<ymax>{y1}</ymax><ymin>{y0}</ymin></bndbox><occluded>0</occluded></object>"
                   for t, (x0, y0, x1, y1) in objs)
    return f"<annotation><size><width>{size[0]}</width><height>{size[1]}</height></size>{body}</annotation>"


def _make_vid(root: Path, write_frames, snippet: str, per_frame: list[list]) -> None:
    write_frames(root / "Data/VID/train" / snippet, len(per_frame), "{:06d}.JPEG", size=(64, 48), start=0)
    ann = root / "Annotations/VID/train" / snippet
    ann.mkdir(parents=True)
    for f, objs in enumerate(per_frame):
        (ann / f"{f:06d}.xml").write_text(_vid_xml(objs))


def test_vid_tracks_become_sequences_with_nan_when_absent(tmp_path, write_frames):
    snip = "ILSVRC2015_VID_train_0000/ILSVRC2015_train_00000000"
    _make_vid(tmp_path, write_frames, snip, [
        [(0, (10, 5, 29, 14))],
        [(0, (11, 5, 30, 14)), (1, (0, 0, 9, 9))],
        [(1, (1, 1, 10, 10))],
    ])
    _make_vid(tmp_path, write_frames, "ILSVRC2015_VID_train_0000/ILSVRC2015_train_00000001", [[(0, (1, 1, 5, 5))]])
    seqs = read_vid(tmp_path, "train")
    assert [s.name for s in seqs] == ["ILSVRC2015_train_00000000/0", "ILSVRC2015_train_00000000/1",
                                      "ILSVRC2015_train_00000001/0"]
    t0, t1 = seqs[0], seqs[1]
    assert len(t0) == len(t1) == 3
    np.testing.assert_array_equal(t0.boxes[:2], [[10, 5, 20, 10], [11, 5, 20, 10]])  # inclusive corners
    assert np.isnan(t0.boxes[2]).all() and np.isnan(t1.boxes[0]).all()
    assert t1.attributes["absence"].tolist() == [1, 0, 0] and t0.attributes["resolution"] == (64, 48)
    assert [s.name for s in read_vid(tmp_path, "train", max_snippets=1)] == [s.name for s in seqs[:2]]


def test_vid_missing_layout(tmp_path):
    with pytest.raises(DataError, match="Data.VID.train"):
        read_vid(tmp_path, "train")


def test_vid_missing_xml_names_it(tmp_path, write_frames):
    _make_vid(tmp_path, write_frames, "s0", [[(0, (1, 1, 5, 5))]] * 2)
    (tmp_path / "Annotations/VID/train/s0/000001.xml").unlink()
    with pytest.raises(DataError, match="000001.xml"):
        read_vid(tmp_path)


# --------------------------------------------------------------------------- views and iteration
def test_unlabeled_hides_labels(tmp_path, make_got10k):
    make_got10k(tmp_path / "val", "a", [[1, 1, 5, 5]] * 3, absence=[0, 0, 1])
    (seq,) = read_got10k(tmp_path)
    u = unlabeled(seq)
    for attr in ("boxes", "polygons"):
        with pytest.raises(LabelAccessError):
            getattr(u, attr)
        with pytest.raises(LabelAccessError):
            getattr(u, attr, None)  # no quiet default
    assert "absence" not in u.attributes and "cover" not in u.attributes and "resolution" in u.attributes
    assert len(u) == 3 and u.name == "a" and u.image(0).shape == (32, 48, 3)
    assert unlabeled(u) is u and len(u.sub(1)) == 2
    with pytest.raises(LabelAccessError):
        u.limit(2).boxes
    with pytest.raises(AttributeError):
        u.boxes_ = 1


def test_sequence_limit_and_sub(tmp_path, make_otb):
    make_otb(tmp_path, "T", [[i + 1, 1, 5, 5] for i in range(10)])
    (seq,) = read_otb(tmp_path)
    short = seq.limit(max_frames=3, stride=2)
    assert [p.name for p in short.frames] == ["0001.jpg", "0003.jpg", "0005.jpg"]
    np.testing.assert_array_equal(short.boxes[:, 0], [0, 2, 4])
    assert len(seq) == 10  # the original is untouched


def test_iter_frames_skip_counts_bad_frames(tmp_path, make_otb):
    folder = make_otb(tmp_path, "T", [[1, 1, 5, 5]] * 4)
    (folder / "img" / "0002.jpg").write_bytes(b"")
    (seq,) = read_otb(tmp_path)
    with pytest.raises(ImageError, match="0002.jpg"):
        list(iter_frames(seq))
    skipped: list[int] = []
    with pytest.warns(UserWarning) as rec:
        got = [i for i, img in iter_frames(seq, on_error="skip", skipped=skipped)]
    assert got == [0, 2, 3] and skipped == [1]
    assert any("skipped 1 of 4" in str(w.message) for w in rec)
    with pytest.raises(ValueError, match="on_error"):
        list(iter_frames(seq, on_error="ignore"))


# --------------------------------------------------------------------------- the four bad-input rules
def test_missing_dataset_folder_names_layout(tmp_path):
    with pytest.raises(DataError, match=r"absent.*groundtruth_rect.txt"):
        read_otb(tmp_path / "absent")
    with pytest.raises(DataError, match=r"absent.*list.txt"):
        read_vot(tmp_path / "absent")


def test_frame_count_mismatch_names_file_and_counts(tmp_path, make_otb):
    make_otb(tmp_path, "T", [[1, 1, 5, 5]] * 3, n_frames=5)
    with pytest.raises(DataError, match=r"groundtruth_rect.txt: 3 boxes but 5 frames"):
        read_otb(tmp_path)


def test_truncated_jpeg_raises_image_error(tmp_path, make_otb):
    folder = make_otb(tmp_path, "T", [[1, 1, 5, 5]] * 2)
    p = folder / "img" / "0002.jpg"
    p.write_bytes(p.read_bytes()[:-40])
    (seq,) = read_otb(tmp_path)
    seq.image(0)
    with pytest.raises(ImageError, match=r"0002.jpg: truncated JPEG"):
        seq.image(1)


def test_unusable_boxes_become_nan_with_one_warning(tmp_path, make_otb):
    make_otb(tmp_path, "T", [[1, 1, 5, 5], [1, 1, 0, 5], [1, 1, -4, 5], ["nan"] * 4, [2, 2, 5, 5]], sep=",")
    with pytest.warns(UserWarning, match=r"3 of 5 boxes unusable") as rec:
        (seq,) = read_otb(tmp_path)
    assert len(rec) == 1
    assert np.isnan(seq.boxes[1:4]).all() and crops.valid_boxes(seq.boxes[[0, 4]]).all()
    assert seq.attributes["unusable_boxes"] == 3


def test_clean_read_emits_no_warning(tmp_path, make_otb):
    make_otb(tmp_path, "T", [[1, 1, 5, 5]] * 2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        (seq,) = read_otb(tmp_path)
    assert isinstance(seq, Sequence)
