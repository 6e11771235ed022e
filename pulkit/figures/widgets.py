"""ipywidgets explorers for the notebooks' ``INTERACTIVE`` runs.

Each explorer returns a ``VBox`` over plain numpy data (the NR loss's moments, a tracked video,
AHM vs RSS batches) that the notebook displays.  Attributes and inputs: docs/modules.md.
"""
from __future__ import annotations

import io
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from pulkit.figures import style as figures
from pulkit.figures.data import plot_frame
from pulkit.figures.sectionB_taylor import plot_map
from pulkit.losses import OFFSET_QUANTUM, label_moments, positive_mask

_PNG_DPI = 90                 # explorer images: legible, quick to redraw


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=_PNG_DPI, facecolor="white")
    return buf.getvalue()


def _explorer(controls: Mapping[str, Any], draw: Callable[[], Any]):
    """A VBox of the controls and a PNG image, redrawn whenever a control's value changes."""
    import ipywidgets as widgets

    image = widgets.Image(format="png")
    box = widgets.VBox([widgets.HBox(list(controls.values())), image])
    box.controls = dict(controls)
    box.image = image
    box.figure = None

    def render(change=None):
        fig = draw()
        image.value = _png(fig)
        box.figure = fig
        return fig

    for w in controls.values():
        w.observe(render, names="value")
    box.render = render
    render()
    return box


# --------------------------------------------------------------------------- the NR loss's label moments
# --------------------------------------------------------------------------- sequences (notebook 00)
def browse_sequences(sequences: Sequence[Any]):
    """An ipywidgets browser (sequence menu, frame slider) over ``plot_frame``; for ``INTERACTIVE`` runs."""
    import ipywidgets as widgets
    from IPython.display import display

    seqs = {s.name: s for s in sequences}
    if not seqs:
        raise ValueError("browse_sequences: no sequences given")
    menu = widgets.Dropdown(options=list(seqs), description="sequence")
    frame = widgets.IntSlider(0, 0, len(seqs[menu.value]) - 1, description="frame")
    menu.observe(lambda change: setattr(frame, "max", len(seqs[change["new"]]) - 1), names="value")

    def show(name: str, i: int) -> None:
        display(plot_frame(seqs[name], min(i, len(seqs[name]) - 1)))

    return widgets.interactive(show, name=menu, i=frame)


def noise_slider(size: int = 17, radius: float = 2.0, norm: str = "l1", sigma: float = 1.0,
                 center=(0.0, 0.0), sigma_max: float = 2.5):
    """Sliders for sigma and the label offset (dx, dy) (cells); shows mbar, V(x0, .) and mbar's centre row.

    ``size``: response map side R; ``radius``: r_pos / stride in cells; ``norm``: ``l1`` | ``l2``.
    The offset sliders move in ``pulkit.losses.OFFSET_QUANTUM`` steps (the moments cache's rounding).
    x0 is the cell nearest the label centre, so V(x0, .) = E[m(x0) m(x)] is the co-occurrence of
    every cell with it.
    """
    import ipywidgets as widgets

    if not (isinstance(size, (int, np.integer)) and size >= 3):
        raise ValueError(f"noise_slider: size must be an int >= 3 (the response map side), got {size!r}")
    if not (np.isfinite(radius) and radius > 0):
        raise ValueError(f"noise_slider: radius must be > 0 cells, got {radius!r}")
    if norm not in ("l1", "l2"):
        raise ValueError(f"noise_slider: norm must be 'l1' or 'l2', got {norm!r}")
    if not (np.isfinite(sigma_max) and 0 < sigma_max and 0 <= sigma <= sigma_max):
        raise ValueError(f"noise_slider: need 0 <= sigma <= sigma_max and sigma_max > 0, got {sigma}, {sigma_max}")
    half = (size - 1) / 2
    c = np.asarray(center, dtype=float).ravel()
    if c.shape != (2,) or not np.all(np.abs(c) <= half):
        raise ValueError(f"noise_slider: center must be (dx, dy) within +-{half} cells, got {center!r}")
    step = float(OFFSET_QUANTUM)
    reach = min(half, max(1.0, float(np.ceil(np.abs(c).max()))))     # offset slider range, cells
    controls = {
        "sigma": widgets.FloatSlider(value=float(sigma), min=0.0, max=float(sigma_max), step=step,
                                     description="σ (cells)", continuous_update=False),
        "dx": widgets.FloatSlider(value=float(c[0]), min=-reach, max=reach, step=step, description="dx",
                                  continuous_update=False),
        "dy": widgets.FloatSlider(value=float(c[1]), min=-reach, max=reach, step=step, description="dy",
                                  continuous_update=False),
    }

    def draw():
        s, dx, dy = (controls[k].value for k in ("sigma", "dx", "dy"))
        mbar, V = label_moments(size, radius, s, (dx, dy), norm)
        o = np.arange(size) - half
        x0 = (int(np.argmin(np.abs(o - dy))), int(np.argmin(np.abs(o - dx))))
        fig, axes = figures.new_figure(1, 3, width=9.0, height=3.2)
        plot_map(axes[0, 0], mbar, f"m̄, σ = {s:g} (Σ = {mbar.sum():.2f})", (dx, dy))
        plot_map(axes[0, 1], V[x0[0] * size + x0[1]].reshape(size, size), "V(x0, ·) = E[m(x0) m(x)]",
                 (dx, dy), x0)
        ax = axes[0, 2]
        hard = _hard_mask(size, radius, (dx, dy), norm)
        ax.step(o, hard[x0[0]], where="mid", color="0.5", label="hard mask (σ = 0)")
        ax.plot(o, mbar[x0[0]], "o-", ms=3, color=figures.NR, label="m̄")
        ax.set_ylim(-0.05, 1.05)
        ax.set_xlabel("dx (cells), row of x0")
        ax.set_title("m̄ along the row of x0", fontsize=8)
        fig.legend(handles=ax.lines, loc="outside right upper", fontsize=7, frameon=False)  # beside, not on, the curves
        return fig

    return _explorer(controls, draw)


def _hard_mask(size: int, radius: float, center, norm: str) -> np.ndarray:
    """The sigma = 0 label (size x size float) for comparison plots."""
    return positive_mask(size, radius, center, norm).numpy().astype(float)


# --------------------------------------------------------------------------- a tracked video
def _frames_of(sequence) -> tuple[Callable[[int], np.ndarray], int, np.ndarray | None, str]:
    """``(image(i), n, gt boxes or None, name)`` of a Sequence, a dict or a list / array of frames."""
    if hasattr(sequence, "image") and hasattr(sequence, "__len__"):
        return sequence.image, len(sequence), getattr(sequence, "boxes", None), str(getattr(sequence, "name", "sequence"))
    if isinstance(sequence, Mapping):
        if "frames" not in sequence:
            raise ValueError("sequence_scrubber: a dict sequence needs 'frames' (list of H x W x 3 uint8), "
                             "optionally 'boxes' (N x 4) and 'name'")
        frames, boxes, name = sequence["frames"], sequence.get("boxes"), str(sequence.get("name", "sequence"))
    elif isinstance(sequence, (list, tuple, np.ndarray)):
        frames, boxes, name = sequence, None, "sequence"
    else:
        raise TypeError(f"sequence_scrubber: sequence must be a pulkit Sequence, a dict with 'frames' or a list "
                        f"of frames, got {type(sequence).__name__}")
    frames = list(frames)
    if not frames:
        raise ValueError("sequence_scrubber: the sequence has no frames")
    return (lambda i: frames[i]), len(frames), boxes, name


def _check_frame(img, i: int) -> np.ndarray:
    a = np.asarray(img)
    if a.dtype != np.uint8 or a.ndim != 3 or a.shape[2] != 3:
        raise ValueError(f"sequence_scrubber: frame {i} must be an H x W x 3 uint8 RGB array, "
                         f"got {a.dtype} {a.shape}")
    return a


def _check_boxes(boxes, n: int, what: str) -> np.ndarray:
    b = np.asarray(boxes, dtype=np.float64)
    if b.shape != (n, 4):
        raise ValueError(f"sequence_scrubber: {what} must be an N x 4 array of [x, y, w, h] with N = {n} frames, "
                         f"got shape {b.shape}")
    return b


def track_sequence(image: Callable[[int], np.ndarray], n: int, init_box, tracker) -> tuple[np.ndarray, list]:
    """Run a got10k-style tracker (``init(img, box)``, ``update(img) -> box``) over frames 0..n-1.

    Returns ``(boxes N x 4, responses)``; ``responses[i]`` is the tracker's chosen-scale raw R x R
    response (``last_responses[last_scale_id]`` of ``SiamFCTracker``) or None when it exposes none.
    """
    from tqdm.auto import tqdm

    boxes = np.full((n, 4), np.nan)
    responses: list = [None] * n
    tracker.init(image(0), np.asarray(init_box, dtype=np.float64))
    boxes[0] = init_box
    for i in tqdm(range(1, n), desc="tracking", leave=False):
        boxes[i] = tracker.update(image(i))
        stack, sid = getattr(tracker, "last_responses", None), getattr(tracker, "last_scale_id", None)
        if stack is not None and sid is not None:
            responses[i] = np.asarray(stack[sid], dtype=np.float64)
    return boxes, responses


def sequence_scrubber(sequence, tracker_or_boxes, responses=None):
    """A frame slider over a video: frame, ground truth (blue), tracker boxes, the frame's response map.

    ``sequence``: a ``pulkit.data.sequences.Sequence``, a dict ``{"frames": [H x W x 3 uint8, ...],
    "boxes": N x 4 or None, "name": str}`` or a plain list of frames.  ``tracker_or_boxes``: an N x 4
    array of ``[x, y, w, h]`` (0-based px; NaN rows: no box), a dict ``{tracker name: N x 4}``, or a
    got10k-style tracker, run once here from the ground truth of frame 0 (never while scrubbing).
    ``responses``: None, or N response maps (R x R arrays, None for frames without one; shown as
    sigmoid of the logits); a tracker's own responses are used when it exposes them.
    """
    import ipywidgets as widgets

    image, n, gt, name = _frames_of(sequence)
    gt = None if gt is None else _check_boxes(gt, n, "the ground truth")
    _check_frame(image(0), 0)
    if hasattr(tracker_or_boxes, "init") and hasattr(tracker_or_boxes, "update"):
        if gt is None or not np.all(np.isfinite(gt[0])):
            raise ValueError("sequence_scrubber: a tracker needs the ground-truth box of frame 0 to start")
        boxes, tracked = track_sequence(image, n, gt[0], tracker_or_boxes)
        runs = {type(tracker_or_boxes).__name__: boxes}
        if responses is None and any(r is not None for r in tracked):
            responses = tracked
    elif isinstance(tracker_or_boxes, Mapping):
        runs = {str(k): _check_boxes(v, n, f"boxes of {k!r}") for k, v in tracker_or_boxes.items()}
    else:
        runs = {"tracker": _check_boxes(tracker_or_boxes, n, "the tracker boxes")}
    if responses is not None:
        responses = list(responses)
        if len(responses) != n:
            raise ValueError(f"sequence_scrubber: {len(responses)} responses for {n} frames (give one per frame, "
                             f"None where there is none)")
        for i, r in enumerate(responses):
            if r is not None and np.asarray(r).ndim != 2:
                raise ValueError(f"sequence_scrubber: response {i} must be a 2-D R x R map, got shape "
                                 f"{np.asarray(r).shape}")
    colors = {k: figures.TRACKER_COLORS.get(k, figures.PALETTE[j % len(figures.PALETTE)])
              for j, k in enumerate(runs)}
    controls = {"frame": widgets.IntSlider(value=0, min=0, max=n - 1, description="frame",
                                           continuous_update=False)}

    def draw():
        from matplotlib.lines import Line2D

        i = controls["frame"].value
        img = _check_frame(image(i), i)
        ncols = 1 if responses is None else 2
        legend_rows = -(-(len(runs) + (gt is not None)) // (2 * ncols))
        fig, axes = figures.new_figure(1, ncols, width=4.5 * ncols, height=3.6 + 0.2 * legend_rows)
        ax = axes[0, 0]
        ax.imshow(img)
        ax.set_axis_off()
        ax.set_title(f"{name} #{i}", fontsize=8)
        # The legend sits above the panels (as in Fig. 5), one entry per tracker on every frame, so the
        # frame neither hides under it nor moves while scrubbing; each tracker's IoU is in its entry.
        handles = []
        has_gt = gt is not None and np.all(np.isfinite(gt[i]))
        if gt is not None:
            if has_gt:
                figures.draw_box(ax, gt[i], figures.TRUE_GT, label="ground truth")
            label = "ground truth" if has_gt else "ground truth: absent"
            handles.append(Line2D([], [], color=figures.TRUE_GT, label=label))
        for k, b in runs.items():
            if np.all(np.isfinite(b[i])):
                figures.draw_box(ax, b[i], colors[k], label=k)
                label = f"{k}: IoU {_iou(b[i], gt[i]):.2f}" if has_gt else k
            else:
                label = f"{k}: no box"
            handles.append(Line2D([], [], color=colors[k], label=label))
        fig.legend(handles=handles, loc="outside upper center", ncols=min(len(handles), 2 * ncols), fontsize=7,
                   frameon=False)
        if responses is not None:
            ax = axes[0, 1]
            r = responses[i]
            if r is None:
                ax.text(0.5, 0.5, "no response (initial frame)", ha="center", va="center", transform=ax.transAxes)
                ax.set_axis_off()
            else:
                ax.imshow(1 / (1 + np.exp(-np.asarray(r, dtype=np.float64))), vmin=0, vmax=1, cmap="viridis")
                ax.grid(False)
                ax.set_title(f"response (sigmoid), {np.asarray(r).shape[0]} x {np.asarray(r).shape[1]}", fontsize=8)
        return fig

    return _explorer(controls, draw)


def _iou(a, b) -> float:
    ax2, ay2, bx2, by2 = a[0] + a[2], a[1] + a[3], b[0] + b[2], b[1] + b[3]
    iw = max(0.0, min(ax2, bx2) - max(a[0], b[0]))
    ih = max(0.0, min(ay2, by2) - max(a[1], b[1]))
    inter = iw * ih
    union = a[2] * a[3] + b[2] * b[3] - inter
    return float(inter / union) if union > 0 else 0.0


# --------------------------------------------------------------------------- mini-batches (BD)
def batch_browser(batches, anchor_keys: Sequence[str] = ("ahm",), max_crops: int = 64):
    """Browse mini-batches side by side: one panel per sampler, a slider over batches.

    ``batches``: ``{"ahm": crops, "rss": crops}`` or a list of such dicts (one per batch index); crops
    are B x H x W x 3 uint8 arrays or lists of them (un-augmented exemplars).  The first crop of a
    sampler named in ``anchor_keys`` is the anchor (Fig. 1: top-left) and is outlined in red.  At most
    ``max_crops`` crops per panel are shown.
    """
    import ipywidgets as widgets

    if isinstance(batches, Mapping):
        batches = [batches]
    if not isinstance(batches, (list, tuple)) or not batches:
        raise ValueError("batch_browser: expected a dict {sampler: crops} or a non-empty list of such dicts, "
                         f"got {type(batches).__name__ if not isinstance(batches, (list, tuple)) else 'an empty list'}")
    for j, bt in enumerate(batches):
        if not isinstance(bt, Mapping) or not bt:
            raise ValueError(f"batch_browser: batch {j} must be a non-empty dict {{sampler: crops}}, "
                             f"got {type(bt).__name__}")
        for key, crops in bt.items():
            figures.crop_mosaic(list(crops)[:max_crops], what=f"batch {j} {key!r}")        # validates every crop
    controls = {"batch": widgets.IntSlider(value=0, min=0, max=len(batches) - 1, description="batch",
                                           continuous_update=False, disabled=len(batches) == 1)}

    def draw():
        j = controls["batch"].value
        bt = batches[j]
        fig, axes = figures.new_figure(1, len(bt), width=4.5 * len(bt), height=4.8)
        for ax, (key, crops) in zip(axes[0], bt.items()):
            crops = list(crops)
            mosaic, ncols = figures.crop_mosaic(crops[:max_crops], what=f"batch {j} {key!r}")
            ax.imshow(mosaic)
            ax.set_axis_off()
            ax.set_title(f"{key.upper()} batch {j}: {len(crops)} crops", fontsize=9)
            if key in anchor_keys:
                h, w = np.asarray(crops[0]).shape[:2]
                figures.draw_box(ax, (0, 0, w, h), figures.NR, lw=2.0, label="anchor")
        return fig

    return _explorer(controls, draw)


__all__ = ["browse_sequences", "noise_slider", "sequence_scrubber", "batch_browser", "track_sequence"]
