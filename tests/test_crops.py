"""Box conventions and SiamFC crops (pulkit.data.crops)."""
from __future__ import annotations

import numpy as np
import pytest

from pulkit.core.config import ConfigError, check_crop_size
from pulkit.data import crops


def _canvas_with_box(box, size=(240, 320)):
    """Black canvas with a white rectangle covering the 0-based box's pixels."""
    img = np.zeros((*size, 3), np.uint8)
    x, y, w, h = map(int, box)
    img[y:y + h, x:x + w] = 255
    return img


def _centroid_and_extent(patch):
    m = patch[..., 0].astype(np.float64) / 255.0
    ys, xs = np.mgrid[0:m.shape[0], 0:m.shape[1]]
    cx, cy = (m * xs).sum() / m.sum(), (m * ys).sum() / m.sum()
    c = m.shape[0] // 2
    return cx, cy, m[int(round(cy))].sum(), m[:, int(round(cx))].sum()


@pytest.mark.parametrize("box", [(100, 80, 40, 20), (37, 51, 17, 33), (5, 5, 24, 24)])
def test_exemplar_crop_centres_target_at_expected_scale(box):
    img = _canvas_with_box(box)
    z = crops.exemplar_crop(img, box, exemplar_sz=127, context=0.5, border=(0, 0, 0))
    assert z.shape == (127, 127, 3)
    scale = 127 / crops.context_size(box[2], box[3], 0.5)
    cx, cy, width, height = _centroid_and_extent(z)
    assert cx == pytest.approx(63, abs=0.05) and cy == pytest.approx(63, abs=0.05)
    assert width == pytest.approx(box[2] * scale, rel=0.03)
    assert height == pytest.approx(box[3] * scale, rel=0.03)


@pytest.mark.parametrize("exemplar_sz,instance_sz", [(103, 207), (127, 255), (135, 271)])
def test_other_crop_sizes_keep_the_centre(exemplar_sz, instance_sz):
    check_crop_size(exemplar_sz), check_crop_size(instance_sz)
    box = (150, 90, 30, 42)
    img = _canvas_with_box(box)
    x, scale = crops.search_crop(img, box, exemplar_sz, instance_sz, border=(0, 0, 0))
    z_sz, x_sz = crops.crop_sizes(30, 42, exemplar_sz, instance_sz)
    assert x.shape == (instance_sz, instance_sz, 3) and scale == pytest.approx(instance_sz / x_sz)
    assert x_sz == pytest.approx(z_sz * instance_sz / exemplar_sz)
    cx, cy, width, _ = _centroid_and_extent(x)
    c = (instance_sz - 1) / 2
    assert (cx, cy) == (pytest.approx(c, abs=0.05), pytest.approx(c, abs=0.05))
    assert width == pytest.approx(30 * scale, rel=0.03)


def test_crop_size_rule_rejects_non_multiples():
    for bad in (128, 250, 0):
        with pytest.raises(ConfigError, match="127 \\+ 8k"):
            check_crop_size(bad)


def test_search_crop_shift_moves_target_by_shift_times_scale():
    box = (150, 90, 30, 30)
    img = _canvas_with_box(box)
    x, scale = crops.search_crop(img, box, shift=(8.0, -4.0), border=(0, 0, 0))
    cx, cy, _, _ = _centroid_and_extent(x)
    assert cx == pytest.approx(127 - 8.0 * scale, abs=0.1) and cy == pytest.approx(127 + 4.0 * scale, abs=0.1)


def test_crop_samples_the_documented_coordinates():
    """Output pixel u samples frame coordinate c + (u - (out-1)/2) * size / out (exact on a linear ramp)."""
    ramp = np.tile(np.arange(200, dtype=np.float32), (150, 1))
    cx, cy, size, out = 97.3, 70.0, 40.0, 31
    patch = crops.crop(ramp, (cx, cy), size, out)
    u = np.arange(out)
    np.testing.assert_allclose(patch[15], cx + (u - (out - 1) / 2) * size / out, atol=1e-3)
    with pytest.raises(ValueError, match="positive"):
        crops.crop(ramp, (cx, cy), float("nan"), out)


def test_crop_outside_frame_uses_mean_colour():
    img = np.full((20, 20, 3), 100, np.uint8)
    img[:10] = 200
    patch = crops.crop(img, (-100, -100), 10, 5)
    np.testing.assert_array_equal(patch, np.full((5, 5, 3), 150, np.uint8))


def test_box_conversions_round_trip():
    rng = np.random.default_rng(0)
    b = np.column_stack([rng.uniform(-10, 300, 50), rng.uniform(-10, 200, 50), rng.uniform(1, 80, (50, 2))])
    np.testing.assert_allclose(crops.cxcywh_to_xywh(crops.xywh_to_cxcywh(b)), b)
    np.testing.assert_allclose(crops.to_one_based(crops.from_one_based(b)), b)
    np.testing.assert_array_equal(crops.from_one_based([1, 1, 5, 7]), [[0, 0, 5, 7]])
    np.testing.assert_array_equal(crops.box_center([10, 20, 5, 8]), [12, 23.5])


def test_polygon_bounds():
    poly = [[1, 2, 11, 0, 13, 9, 3, 11]]                  # rotated quad
    np.testing.assert_array_equal(crops.polygon_to_xywh(poly), [[1, 0, 12, 11]])
    bowtie = [[0, 0, 10, 10, 10, 0, 0, 10]]               # self-intersecting: bounds still defined
    np.testing.assert_array_equal(crops.polygon_to_xywh(bowtie), [[0, 0, 10, 10]])


def test_iou_and_validity():
    a = np.array([[0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 10, 10], [np.nan] * 4])
    b = np.array([[0, 0, 10, 10], [5, 0, 10, 10], [20, 20, 5, 5], [0, 0, 10, 10]])
    np.testing.assert_allclose(crops.iou(a, b), [1.0, 50 / 150, 0.0, 0.0])
    np.testing.assert_allclose(crops.center_error(a[:2], b[:2]), [0.0, 5.0])
    np.testing.assert_array_equal(crops.valid_boxes([[0, 0, 1, 1], [0, 0, 0, 1], [0, 0, -1, 1], [np.nan, 0, 1, 1]]),
                                  [True, False, False, False])
