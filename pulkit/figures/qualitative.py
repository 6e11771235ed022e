"""Figures of notebook 06 (supplementary): Fig. 5 (qualitative tracks: every tracker's box on the
same picked frames) and Fig. 7 (failure cases at the automatically found drift frames)."""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np
from matplotlib.figure import Figure

from pulkit.core import artifacts
from pulkit.core.results import load_results
from pulkit.data.images import read_rgb
from pulkit.figures.style import PALETTE, TRACKER_COLORS, TRUE_GT, draw_box, new_figure

NOTEBOOK = "06_qualitative"


def tracker_color(name: str, order: int = 0) -> str:
    """``TRACKER_COLORS`` by the name's first word (``"SiamFC (supervised)"`` -> SiamFC's green),
    else the ``order``-th house palette colour."""
    return TRACKER_COLORS.get(name.split(" ")[0], PALETTE[order % len(PALETTE)])


def _colors(trackers) -> dict[str, str]:
    return {t: tracker_color(t, i) for i, t in enumerate(trackers)}


def _draw(ax, panel: Mapping[str, Any], image: np.ndarray, colors: Mapping[str, str]) -> None:
    ax.imshow(image)
    ax.set_axis_off()
    draw_box(ax, panel["gt"], TRUE_GT, ls="--", lw=1.2)
    for name, box in panel["boxes"].items():
        draw_box(ax, box, colors[name], lw=1.4)
    if not np.isfinite(np.asarray(panel["gt"], dtype=np.float64)).all():
        ax.text(0.02, 0.02, "target absent", transform=ax.transAxes, fontsize=6, color="white",
                bbox=dict(facecolor="black", alpha=0.5, lw=0))


def _legend(fig: Figure, colors: Mapping[str, str]) -> None:
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=TRUE_GT, ls="--", label="ground truth")]
    handles += [Line2D([], [], color=c, label=n) for n, c in colors.items()]
    fig.legend(handles=handles, loc="outside upper center", ncols=min(len(handles), 5), fontsize=7, frameon=False)


def _image(images: Mapping[str, np.ndarray], panel: Mapping[str, Any]) -> np.ndarray:
    name = panel.get("image")
    if name not in images:
        raise KeyError(f"no image {name!r} for {panel['sequence']} frame {panel['frame']}")
    return np.asarray(images[name])


def _aspect(images: Mapping[str, np.ndarray], panels) -> float:
    """Height / width of the first panel's image."""
    h, w = _image(images, panels[0]).shape[:2]
    return h / w


def fig5_qualitative(record: Mapping[str, Any], images: Mapping[str, np.ndarray], width: float = 9.0) -> Figure:
    """Fig. 5 from ``record`` (``qualitative.fig5_record``): sequences as rows, picked frames as columns."""
    rows = record["rows"]
    if not rows or not any(r["panels"] for r in rows):
        raise ValueError("fig5_qualitative: the record has no sequences / frames to show")
    colors = _colors(record["trackers"])
    ncols = max(len(r["panels"]) for r in rows)
    first = next(r["panels"] for r in rows if r["panels"])
    fig, axes = new_figure(len(rows), ncols, width=width,
                           height=0.3 + len(rows) * width / ncols * _aspect(images, first) * 1.12)
    for ax_row, row in zip(axes, rows):
        for ax in ax_row:
            ax.set_axis_off()
        for ax, panel in zip(ax_row, row["panels"]):
            _draw(ax, panel, _image(images, panel), colors)
            ax.set_title(f"{row['sequence']}  frame {panel['frame'] + 1}", fontsize=7)
    _legend(fig, colors)
    return fig


def fig7_failures(record: Mapping[str, Any], images: Mapping[str, np.ndarray], ncols: int = 3,
              width: float = 9.0) -> Figure:
    """Fig. 7 from ``record`` (``qualitative.fig7_record``): each drift frame with the drifting
    tracker(s) named on the panel; without drift, each tracker's lowest-IoU frame and the note."""
    panels = record["panels"]
    if not panels:
        raise ValueError("fig7_failures: the record has no panels (no sequences were tracked)")
    colors = _colors(record["trackers"])
    ncols = min(ncols, len(panels))
    nrows = -(-len(panels) // ncols)
    fig, axes = new_figure(nrows, ncols, width=width,
                           height=0.5 + nrows * width / ncols * _aspect(images, panels) * 1.15)
    for ax in axes.ravel():
        ax.set_axis_off()
    key = "drifting" if record["drift"] else "lowest_iou"
    for ax, panel in zip(axes.ravel(), panels):
        _draw(ax, panel, _image(images, panel), colors)
        ax.set_title(f"{panel['sequence']}  frame {panel['frame'] + 1}", fontsize=7)
        lines = []
        for name in panel[key]:
            what = "drifts" if record["drift"] else f"lowest IoU {panel['iou'][name]:.2f}"
            lines.append((f"{name} {what} at frame {panel['frame'] + 1}", colors[name]))
        for k, (text, color) in enumerate(lines):
            ax.text(0.02, 0.97 - 0.1 * k, text, transform=ax.transAxes, va="top", fontsize=6.5, color="white",
                    bbox=dict(facecolor=color, alpha=0.8, lw=0, pad=1.5))
    rule = f"drift: IoU < {record['drift_iou']:g} for {record['drift_frames']} consecutive frames"
    extra = f"; {record['left_out']} more not shown" if record.get("left_out") else ""
    fig.supxlabel((record["note"] + "\n" if record.get("note") else "") + rule + extra, fontsize=7)
    _legend(fig, colors)
    return fig


# --------------------------------------------------------------------------- from saved results
def load_images(profile: str, record: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """The frames a figure record names, from ``artifacts.frames_dir(profile)``."""
    folder = artifacts.frames_dir(profile)
    panels = [p for r in record["rows"] for p in r["panels"]] if "rows" in record else record["panels"]
    out = {}
    for p in panels:
        path = folder / p["image"]
        if not path.is_file():
            raise artifacts.missing(path, profile, f"frame {p['image']!r} of the figures")
        out[p["image"]] = read_rgb(path)
    return out


def fig5_qualitative_from_results(profile: str) -> Figure:
    record = load_results(profile, NOTEBOOK)["fig5"]
    return fig5_qualitative(record, load_images(profile, record))


def fig7_failures_from_results(profile: str) -> Figure:
    record = load_results(profile, NOTEBOOK)["fig7"]
    return fig7_failures(record, load_images(profile, record))
