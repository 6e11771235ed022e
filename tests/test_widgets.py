"""The ipywidgets explorers: build without a display, redraw on a slider change, refuse bad input."""
from __future__ import annotations

import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg

from pulkit.figures import widgets
from pulkit.figures.style import NR, TRUE_GT
from pulkit.losses import label_moments


def images(fig):
    """Image arrays of every axes of a figure, in axes order."""
    return [im.get_array() for ax in fig.axes for im in ax.get_images()]


def test_noise_slider_redraws_the_moments_of_the_new_sigma_and_offset():
    box = widgets.noise_slider(size=9, radius=2.0, sigma=0.5)
    assert set(box.controls) == {"sigma", "dx", "dy"}
    assert box.image.value[:8] == b"\x89PNG\r\n\x1a\n"              # a PNG is shown
    mbar, _ = label_moments(9, 2.0, 0.5, (0, 0))
    np.testing.assert_allclose(images(box.figure)[0], mbar)
    first_png = box.image.value

    box.controls["sigma"].value = 1.5                                # the observer fires
    box.controls["dx"].value = 0.375
    mbar, V = label_moments(9, 2.0, 1.5, (0.375, 0.0))
    shown = images(box.figure)
    np.testing.assert_allclose(shown[0], mbar)
    np.testing.assert_allclose(shown[1], V[4 * 9 + 4].reshape(9, 9))  # x0: the cell nearest (0.375, 0)
    assert "1.5" in box.figure.axes[0].get_title()
    assert box.image.value != first_png
    row = box.figure.axes[2].lines[1].get_ydata()                    # mbar along x0's row
    np.testing.assert_allclose(row, mbar[4])


@pytest.mark.parametrize("kwargs, match", [
    (dict(size=2), "size"), (dict(radius=0), "radius"), (dict(norm="l3"), "norm"),
    (dict(sigma=3.0, sigma_max=2.5), "sigma"), (dict(center=(9, 0)), "center"),
])
def test_noise_slider_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        widgets.noise_slider(**kwargs)


def video(n=4, h=24, w=32):
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for _ in range(n)]
    gt = np.array([[4 + i, 5, 10, 8] for i in range(n)], dtype=float)
    return frames, gt


def test_sequence_scrubber_shows_the_chosen_frame_boxes_and_response():
    frames, gt = video()
    boxes = gt + [1, 0, 0, 0]
    boxes[2] = np.nan                                                 # no box on frame 2
    responses = [None] + [np.full((5, 5), float(i)) for i in range(1, 4)]
    box = widgets.sequence_scrubber({"frames": frames, "boxes": gt, "name": "toy"}, {"AlexPUL": boxes}, responses)
    assert "no response" in box.figure.axes[1].texts[0].get_text()  # frame 0 has no response

    box.controls["frame"].value = 3
    ax_frame, ax_resp = box.figure.axes
    np.testing.assert_array_equal(images(box.figure)[0], frames[3])
    rects = {p.get_label(): p for p in ax_frame.patches}
    assert set(rects) == {"ground truth", "AlexPUL"}
    assert rects["ground truth"].get_xy() == (gt[3, 0] - 0.5, gt[3, 1] - 0.5)
    assert rects["ground truth"].get_edgecolor()[:3] == pytest.approx(_rgb(TRUE_GT))
    assert rects["AlexPUL"].get_xy() == (boxes[3, 0] - 0.5, boxes[3, 1] - 0.5)
    np.testing.assert_allclose(ax_resp.get_images()[0].get_array(), 1 / (1 + np.exp(-3.0)))
    assert ax_frame.get_title() == "toy #3"
    assert legend(box.figure) == ["ground truth", f"AlexPUL: IoU {widgets._iou(boxes[3], gt[3]):.2f}"]

    box.controls["frame"].value = 2
    assert {p.get_label() for p in box.figure.axes[0].patches} == {"ground truth"}
    assert legend(box.figure) == ["ground truth", "AlexPUL: no box"]       # every tracker listed on every frame


def legend(fig):
    """The texts of the figure's legend (the scrubber's sits outside the panels)."""
    assert len(fig.legends) == 1 and not any(ax.get_legend() for ax in fig.axes), "the legend covers a panel"
    return [t.get_text() for t in fig.legends[0].get_texts()]


def test_explorer_titles_and_legends_stay_clear_of_the_data():
    """No title wider than its panel, and no legend over a panel: the 06 scrubber once clipped both."""
    frames, gt = video(n=3, h=48, w=64)
    runs = {name: gt + [k, 0, 0, 0] for k, name in enumerate(["AlexPUL", "ResPUL", "SiamFC (supervised)",
                                                               "SiamDW (supervised)"])}
    responses = [None, np.zeros((17, 17)), np.ones((17, 17))]
    named = {"frames": frames, "boxes": gt, "name": "otb/Crossing"}
    for box in (widgets.sequence_scrubber(named, runs, responses), widgets.noise_slider(size=17),
                widgets.batch_browser({"ahm": crops(64, 0), "rss": crops(64, 100)})):
        box.controls[next(iter(box.controls))].value = box.controls[next(iter(box.controls))].max
        fig = box.figure
        canvas = FigureCanvasAgg(fig)
        canvas.draw()                                                 # lays the figure out as the PNG shows it
        renderer = canvas.get_renderer()
        page = fig.bbox
        for ax in fig.axes:
            title = ax.title.get_window_extent(renderer)
            assert page.x0 <= title.x0 and title.x1 <= page.x1 + 0.5, f"title {ax.get_title()!r} is clipped"
            assert ax.get_legend() is None, f"a legend over the panel {ax.get_title()!r}"
        panels = [ax.get_window_extent(renderer) for ax in fig.axes]
        for lg in fig.legends:
            where = lg.get_window_extent(renderer)
            assert page.x0 <= where.x0 and where.x1 <= page.x1 + 0.5 and where.y1 <= page.y1 + 0.5
            assert not any(where.overlaps(p) for p in panels), "a legend covers a panel"


def test_sequence_scrubber_plain_frames_and_a_tracker():
    frames, gt = video(n=3)

    class Drift:
        """A got10k-style tracker moving its box 1 px right per frame, with a SiamFC-like response."""
        def init(self, img, box):
            self.box = np.asarray(box, float)

        def update(self, img):
            self.box = self.box + [1, 0, 0, 0]
            self.last_responses, self.last_scale_id = np.zeros((3, 5, 5)), 1
            return self.box

    box = widgets.sequence_scrubber({"frames": frames, "boxes": gt}, Drift())
    box.controls["frame"].value = 2
    rect = {p.get_label(): p for p in box.figure.axes[0].patches}["Drift"]
    assert rect.get_xy() == (gt[0, 0] + 2 - 0.5, gt[0, 1] - 0.5)
    assert len(box.figure.axes) == 2                                  # the tracker's responses are shown
    plain = widgets.sequence_scrubber(frames, gt)                      # frames only: no ground truth
    assert len(plain.figure.axes) == 1 and [p.get_label() for p in plain.figure.axes[0].patches] == ["tracker"]


def test_sequence_scrubber_bad_input():
    frames, gt = video()
    with pytest.raises(ValueError, match="N x 4"):
        widgets.sequence_scrubber(frames, gt[:2])
    with pytest.raises(ValueError, match="uint8"):
        widgets.sequence_scrubber([f.astype(float) for f in frames], gt)
    with pytest.raises(ValueError, match="3 responses for 4 frames"):
        widgets.sequence_scrubber(frames, gt, responses=[None] * 3)
    with pytest.raises(ValueError, match="2-D"):
        widgets.sequence_scrubber(frames, gt, responses=[np.zeros(3)] * 4)
    with pytest.raises(ValueError, match="frames"):
        widgets.sequence_scrubber({"images": frames}, gt)
    with pytest.raises(TypeError, match="sequence"):
        widgets.sequence_scrubber(42, gt)
    with pytest.raises(ValueError, match="ground-truth box of frame 0"):
        widgets.sequence_scrubber(frames, type("T", (), {"init": None, "update": None})())


def crops(n, value, size=8):
    return np.stack([np.full((size, size, 3), value + k, np.uint8) for k in range(n)])


def test_batch_browser_grids_and_anchor():
    batches = [{"ahm": crops(5, 10), "rss": crops(4, 100)}, {"ahm": crops(5, 50), "rss": crops(4, 200)}]
    box = widgets.batch_browser(batches)
    box.controls["batch"].value = 1
    ahm_ax, rss_ax = box.figure.axes
    mosaic = ahm_ax.get_images()[0].get_array()
    assert mosaic.shape == (2 * 8 + 2, 3 * 8 + 4, 3)                   # 5 crops: 2 rows x 3 columns, 2 px gaps
    assert mosaic[0, 0, 0] == 50 and mosaic[0, 10, 0] == 51 and mosaic[10, 0, 0] == 53   # batch 1's crops
    assert mosaic[8, 0, 0] == 255                                      # white gap
    assert [p.get_label() for p in ahm_ax.patches] == ["anchor"]       # the anchor, top-left
    assert ahm_ax.patches[0].get_edgecolor()[:3] == pytest.approx(_rgb(NR))
    assert not rss_ax.patches and "RSS batch 1: 4 crops" in rss_ax.get_title()
    single = widgets.batch_browser({"ahm": list(crops(2, 0))})
    assert single.controls["batch"].disabled


def test_batch_browser_bad_input():
    with pytest.raises(ValueError, match="non-empty list"):
        widgets.batch_browser([])
    with pytest.raises(ValueError, match="uint8"):
        widgets.batch_browser({"ahm": np.zeros((2, 8, 8, 3))})
    with pytest.raises(ValueError, match="share a size"):
        widgets.batch_browser({"rss": [np.zeros((8, 8, 3), np.uint8), np.zeros((9, 8, 3), np.uint8)]})
    with pytest.raises(ValueError, match="empty"):
        widgets.batch_browser({"ahm": []})
    with pytest.raises(ValueError, match="batch 1"):
        widgets.batch_browser([{"ahm": crops(2, 0)}, "rss"])


def _rgb(color):
    from matplotlib.colors import to_rgb

    return to_rgb(color)
