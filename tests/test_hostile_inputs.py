"""Hostile inputs to the readers: each gives a clear error naming the file, or a counted skip.

The cases mirror ``pulkit.data.sequences.HOSTILE_INPUTS`` (the README's reliability table).
"""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from pulkit.data.images import ImageError, read_rgb
from pulkit.data.sequences import (
    HOSTILE_INPUTS,
    DataError,
    iter_frames,
    read_got10k,
    read_otb,
    read_otb_sequence,
    read_vid,
    read_vot,
    read_vot_sequence,
)

BOX = [[11, 6, 20, 10]]


# --------------------------------------------------------------------------- images
def test_zero_byte_and_truncated_jpegs(tmp_path, make_otb):
    folder = make_otb(tmp_path, "T", BOX * 4)
    (folder / "img" / "0002.jpg").write_bytes(b"")
    third = folder / "img" / "0003.jpg"
    third.write_bytes(third.read_bytes()[: len(third.read_bytes()) // 2])
    (seq,) = read_otb(tmp_path)          # reading the annotation needs only the first frame's header
    with pytest.raises(ImageError, match=r"0002.jpg: empty \(zero-byte\)"):
        seq.image(1)
    with pytest.raises(ImageError, match=r"0003.jpg: truncated JPEG"):
        seq.image(2)
    skipped: list[int] = []
    with pytest.warns(UserWarning) as rec:
        assert [i for i, _ in iter_frames(seq, on_error="skip", skipped=skipped)] == [0, 3]
    assert skipped == [1, 2]
    messages = [str(w.message) for w in rec]
    assert len(messages) == 3 and "0002.jpg" in messages[0] and "0003.jpg" in messages[1]
    assert "skipped 2 of 4" in messages[2]


def test_jpeg_missing_only_its_end_marker(tmp_path):
    ok, buf = cv2.imencode(".jpg", np.full((16, 16, 3), 128, np.uint8))
    p = tmp_path / "x.jpg"
    p.write_bytes(buf.tobytes()[:-2])
    with pytest.raises(ImageError, match="truncated JPEG"):
        read_rgb(p)


def test_truncated_png_and_garbage(tmp_path):
    ok, buf = cv2.imencode(".png", np.zeros((16, 16), np.uint8))
    (tmp_path / "t.png").write_bytes(buf.tobytes()[:-12])
    with pytest.raises(ImageError, match=r"t.png: truncated PNG"):
        read_rgb(tmp_path / "t.png")
    (tmp_path / "g.jpg").write_bytes(b"this is not an image")
    with pytest.raises(ImageError, match=r"g.jpg: cannot decode"):
        read_rgb(tmp_path / "g.jpg")
    with pytest.raises(ImageError, match="is a folder"):
        read_rgb(tmp_path)
    with pytest.raises(ImageError, match="no such image"):
        read_rgb(tmp_path / "nope.jpg")


def test_grayscale_png_sequence(tmp_path, write_frames):
    folder = tmp_path / "Gray"
    write_frames(folder / "img", 3, "{:04d}.png", size=(40, 30), gray=True)
    (folder / "groundtruth_rect.txt").write_text("2,2,5,5\n" * 3)
    (seq,) = read_otb(tmp_path)
    img = seq.image(2)
    assert img.shape == (30, 40, 3) and img.dtype == np.uint8
    assert (img[..., 0] == img[..., 1]).all() and (img[..., 1] == img[..., 2]).all()


def test_sixteen_bit_png_is_scaled_not_clipped(tmp_path):
    img16 = np.full((8, 8), 65535, np.uint16)
    img16[0, 0] = 0
    cv2.imencode(".png", img16)[1].tofile(str(tmp_path / "d.png"))
    img = read_rgb(tmp_path / "d.png")
    assert img[1, 1, 0] == 255 and img[0, 0, 0] == 0


# --------------------------------------------------------------------------- annotation text
@pytest.mark.parametrize("line", ["11;6;20;10", "11,6,20,ten", "11,,6,20,10"])
def test_unparsable_annotation_names_file_and_line(tmp_path, make_otb, line):
    folder = make_otb(tmp_path, "T", BOX * 2)
    (folder / "groundtruth_rect.txt").write_text(f"11,6,20,10\n{line}\n")
    with pytest.raises(DataError, match=r"groundtruth_rect.txt: line 2: cannot parse"):
        read_otb(tmp_path)


def test_wrong_value_count(tmp_path, make_otb):
    folder = make_otb(tmp_path, "T", BOX)
    (folder / "groundtruth_rect.txt").write_text("11,6,20,10,3\n")
    with pytest.raises(DataError, match=r"line 1: 5 values, expected 4"):
        read_otb(tmp_path)


def test_blank_lines(tmp_path, make_otb):
    folder = make_otb(tmp_path, "T", BOX * 2)
    (folder / "groundtruth_rect.txt").write_text("11,6,20,10\n12,6,20,10\n\n\n  \n")  # trailing: fine
    (seq,) = read_otb(tmp_path)
    assert len(seq.boxes) == 2
    (folder / "groundtruth_rect.txt").write_text("11,6,20,10\n\n12,6,20,10\n")
    with pytest.raises(DataError, match=r"groundtruth_rect.txt: blank line 2"):
        read_otb(tmp_path)


def test_non_utf8_annotation(tmp_path, make_otb):
    folder = make_otb(tmp_path, "T", BOX)
    (folder / "groundtruth_rect.txt").write_bytes(b"\xff\xfe1\x00,\x00")
    with pytest.raises(DataError, match="groundtruth_rect.txt: not UTF-8"):
        read_otb(tmp_path)


def test_nan_negative_huge_and_outside_boxes_marked_absent(tmp_path, make_otb):
    rows = [[11, 6, 20, 10], ["NaN", "NaN", "NaN", "NaN"], [11, 6, -20, 10], [1, 1, 1e9, 1e9],
            [500, 500, 10, 10], [-50, 5, 10, 10], [1, 1, 0, 0], ["inf", 1, 2, 2], [-3, -2, 20, 10]]
    make_otb(tmp_path, "T", rows)  # frames are 48 x 32
    with pytest.warns(UserWarning, match=r"7 of 9 boxes unusable.*frames 1, 2, 3, 4, 5, 6, 7 marked absent") as rec:
        (seq,) = read_otb(tmp_path)
    assert len(rec) == 1
    assert np.isnan(seq.boxes[1:8]).all()
    np.testing.assert_array_equal(seq.boxes[[0, 8]], [[10, 5, 20, 10], [-4, -3, 20, 10]])  # partly outside: kept


@pytest.mark.parametrize("n_boxes,n_frames", [(3, 5), (5, 3)])
def test_fewer_or_more_boxes_than_frames(tmp_path, make_otb, make_vot, make_got10k, n_boxes, n_frames):
    make_otb(tmp_path / "otb", "T", BOX * n_boxes, n_frames=n_frames)
    with pytest.raises(DataError, match=rf"groundtruth_rect.txt: {n_boxes} boxes but {n_frames} frames"):
        read_otb(tmp_path / "otb")
    make_vot(tmp_path / "vot", "V", BOX * n_boxes, n_frames=n_frames)
    with pytest.raises(DataError, match=rf"groundtruth.txt: {n_boxes} boxes but {n_frames} frames"):
        read_vot(tmp_path / "vot")
    folder = make_got10k(tmp_path / "got" / "val", "G", BOX * n_frames)
    (folder / "groundtruth.txt").write_text("1,1,5,5\n" * n_boxes)
    with pytest.raises(DataError, match=rf"groundtruth.txt: {n_boxes} boxes but {n_frames} frames"):
        read_got10k(tmp_path / "got")


def test_label_file_length_mismatch(tmp_path, make_got10k):
    folder = make_got10k(tmp_path / "val", "G", BOX * 3)
    (folder / "absence.label").write_text("0\n0\n")
    with pytest.raises(DataError, match=r"absence.label: 2 labels but 3 frames"):
        read_got10k(tmp_path)


def test_gap_in_frame_numbers(tmp_path, make_otb):
    folder = make_otb(tmp_path, "T", BOX * 4)
    (folder / "img" / "0003.jpg").unlink()
    with pytest.raises(DataError, match=r"frame 3 is missing"):
        read_otb(tmp_path)


def test_no_frames(tmp_path):
    (tmp_path / "T" / "img").mkdir(parents=True)
    (tmp_path / "T" / "groundtruth_rect.txt").write_text("1,1,5,5\n")
    with pytest.raises(DataError, match=r"img: no frames"):
        read_otb(tmp_path)


# --------------------------------------------------------------------------- VOT polygons
def test_self_intersecting_polygon_keeps_polygon_and_bounds(tmp_path, make_vot):
    bowtie = [1, 1, 21, 11, 21, 1, 1, 11]                  # 1-based, edges cross
    folder = make_vot(tmp_path, "V", [bowtie, [11, 6, 20, 10]])
    seq = read_vot_sequence(folder)
    np.testing.assert_array_equal(seq.polygons[0], np.array(bowtie) - 1.0)
    np.testing.assert_array_equal(seq.boxes[0], [0, 0, 20, 10])
    np.testing.assert_array_equal(seq.boxes[1], [10, 5, 20, 10])


def test_degenerate_polygon_is_absent_in_boxes_and_polygons(tmp_path, make_vot):
    folder = make_vot(tmp_path, "V", [[5, 5, 5, 5, 5, 5, 5, 5], [11, 6, 20, 10]])
    with pytest.warns(UserWarning, match="1 of 2 boxes unusable"):
        seq = read_vot_sequence(folder)
    assert np.isnan(seq.boxes[0]).all() and np.isnan(seq.polygons[0]).all()


def test_vot_mask_lines_rejected(tmp_path, make_vot):
    folder = make_vot(tmp_path, "V", [[11, 6, 20, 10]])
    (folder / "groundtruth.txt").write_text("m10,10,2,2,5\n")
    with pytest.raises(DataError, match="mask annotations"):
        read_vot_sequence(folder)


# --------------------------------------------------------------------------- layouts and paths
def test_one_frame_sequences(tmp_path, make_otb, make_vot, make_got10k):
    make_otb(tmp_path / "otb", "One", BOX)
    make_vot(tmp_path / "vot", "One", BOX)
    make_got10k(tmp_path / "got" / "val", "One", [[1, 1, 5, 5]])
    for seq in (*read_otb(tmp_path / "otb"), *read_vot(tmp_path / "vot"), *read_got10k(tmp_path / "got")):
        assert len(seq) == 1 and seq.boxes.shape == (1, 4) and np.isfinite(seq.boxes).all()
        assert seq.image(0).shape[2] == 3


def test_missing_list_txt(tmp_path, make_vot, make_got10k):
    make_vot(tmp_path / "vot", "V", BOX)
    (tmp_path / "vot" / "list.txt").unlink()
    with pytest.raises(DataError, match=r"vot[/\\]list.txt: missing file"):
        read_vot(tmp_path / "vot")
    (tmp_path / "got" / "val").mkdir(parents=True)
    with pytest.raises(DataError, match=r"val[/\\]list.txt: missing file"):
        read_got10k(tmp_path / "got")


def test_list_names_missing_folder(tmp_path, make_otb):
    make_otb(tmp_path, "A", BOX)
    (tmp_path / "list.txt").write_text("A\nGhost\n")
    with pytest.raises(DataError, match="Ghost: no such folder"):
        read_otb(tmp_path)


def test_dataset_path_is_a_file(tmp_path):
    f = tmp_path / "dataset.zip"
    f.write_bytes(b"PK")
    for reader in (read_otb, read_vot, read_got10k, read_vid, read_otb_sequence, read_vot_sequence):
        with pytest.raises(DataError, match=r"dataset.zip: is a file; expected a folder"):
            reader(f)


def test_missing_annotation_file(tmp_path, write_frames):
    write_frames(tmp_path / "T" / "img", 2, "{:04d}.jpg")
    with pytest.raises(DataError, match=r"groundtruth_rect.txt: missing file"):
        read_otb(tmp_path)


def test_unicode_and_spaces_in_paths(tmp_path, make_otb, make_vot):
    root = tmp_path / "données vidéo" / "数据 集"
    make_otb(root, "Séquence 1", BOX * 2)
    (seq,) = read_otb(root)
    assert seq.name == "Séquence 1" and seq.image(1).shape == (32, 48, 3)
    make_vot(tmp_path / "vöt set", "bäg 2", BOX)
    (v,) = read_vot(tmp_path / "vöt set")
    assert v.image(0).shape == (48, 64, 3)


def test_malformed_vid_xml(tmp_path, write_frames):
    write_frames(tmp_path / "Data/VID/train/s0", 1, "{:06d}.JPEG", start=0)
    (tmp_path / "Annotations/VID/train/s0").mkdir(parents=True)
    (tmp_path / "Annotations/VID/train/s0/000000.xml").write_text("<annotation><object>")
    with pytest.raises(DataError, match=r"000000.xml: malformed annotation XML"):
        read_vid(tmp_path)


def test_hostile_table_is_documented():
    assert len(HOSTILE_INPUTS) >= 15
    assert all(case and action for case, action in HOSTILE_INPUTS)
