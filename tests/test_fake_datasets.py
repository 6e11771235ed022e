"""The generated GOT-10k / VID / OTB / VOT stand-ins are read by pulkit's readers exactly as real data."""
from __future__ import annotations

import numpy as np
import pytest

from pulkit.data import crops
from pulkit.data.fake_datasets import RESOLUTIONS, write_got10k, write_otb, write_vid, write_vot
from pulkit.data.images import image_size
from pulkit.data.sequences import read_got10k, read_otb, read_vid, read_vot
from pulkit.data.synthetic import render_video

FRAMES = 3


@pytest.fixture(scope="module")
def roots(tmp_path_factory):
    base = tmp_path_factory.mktemp("fake")
    return {"got10k": write_got10k(base / "got10k", videos=2, val_videos=1, frames=FRAMES, seed=11),
            "vid": write_vid(base / "vid", snippets=2, frames=FRAMES, seed=12),
            "otb": write_otb(base / "otb", sequences=2, frames=FRAMES, seed=13),
            "vot": write_vot(base / "vot", sequences=2, frames=FRAMES, seed=14)}


def test_got10k_layout(roots):
    train = read_got10k(roots["got10k"], subset="train")
    val = read_got10k(roots["got10k"], subset="val")          # through got10k's own GOT10k class
    assert [s.name for s in train] == ["GOT-10k_Train_000001", "GOT-10k_Train_000002"]
    assert [s.name for s in val] == ["GOT-10k_Val_000001"]
    for i, s in enumerate(train):
        v = render_video(11, i, FRAMES, *RESOLUTIONS["got10k"][i], n_distractors=1)
        assert s.attributes["resolution"] == RESOLUTIONS["got10k"][i] == image_size(s.frames[0])
        np.testing.assert_array_equal(s.boxes, v.boxes[0])
        assert len(s.attributes["absence"]) == len(s.attributes["cover"]) == FRAMES
        assert s.attributes["unusable_boxes"] == 0


def test_vid_layout(roots):
    seqs = read_vid(roots["vid"])
    assert [s.name for s in seqs] == ["ILSVRC2015_train_00000000/0", "ILSVRC2015_train_00000000/1",
                                      "ILSVRC2015_train_00000001/0", "ILSVRC2015_train_00000001/1"]
    assert (roots["vid"] / "ImageSets" / "VID").is_dir()
    for s in seqs:
        i, track = int(s.name.split("/")[0][-1]), int(s.attributes["track_id"])
        v = render_video(12, i, FRAMES, *RESOLUTIONS["vid"][i], n_distractors=1)
        assert s.attributes["resolution"] == RESOLUTIONS["vid"][i] == image_size(s.frames[0])
        assert s.frames[0].name == "000000.JPEG"
        seen = v.visible[track] > 0
        np.testing.assert_array_equal(s.boxes[seen], v.boxes[track][seen])    # inclusive corners -> w, h
        assert np.isnan(s.boxes[~seen]).all()


def test_otb_layout_with_a_two_target_sequence(roots):
    seqs = {s.name: s for s in read_otb(roots["otb"])}
    assert set(seqs) == {"Car4", "Jogging.1", "Jogging.2"}
    v = render_video(13, 1, FRAMES, *RESOLUTIONS["otb"][1], n_distractors=1)
    np.testing.assert_array_equal(seqs["Jogging.2"].boxes, v.boxes[1])          # 1-based file, 0-based boxes
    assert image_size(seqs["Car4"].frames[0]) == RESOLUTIONS["otb"][0]
    assert seqs["Car4"].frames[0].name == "0001.jpg"


def test_vot_layouts_2016_and_color_folder(roots):
    seqs = read_vot(roots["vot"])
    assert [s.name for s in seqs] == ["graduate", "basketball"]
    assert seqs[0].frames[0].parent.name == "graduate" and seqs[1].frames[0].parent.name == "color"
    for i, s in enumerate(seqs):
        v = render_video(14, i, FRAMES, *RESOLUTIONS["vot"][i], n_distractors=1)
        assert s.polygons.shape == (FRAMES, 8)
        assert image_size(s.frames[0]) == RESOLUTIONS["vot"][i]
        # rotated corners (1-based in the file): their axis-aligned bounds keep the rendered box's centre
        np.testing.assert_allclose(crops.xywh_to_cxcywh(s.boxes)[:, :2], crops.xywh_to_cxcywh(v.boxes[0])[:, :2],
                                   atol=1e-3)
        assert (s.boxes[:, 2:] >= v.boxes[0][:, 2:] - 1e-3).all()
        assert {"occlusion", "camera_motion"} <= set(s.attributes)
