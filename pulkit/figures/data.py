"""Figures of notebook 00: sample frames of the profile's sequences with their true boxes."""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from matplotlib.figure import Figure

from pulkit.figures.style import TRUE_GT, draw_box, new_figure


def plot_sample_frames(sequences: Sequence[Any], n_frames: int = 4, max_sequences: int = 8,
                       width: float = 9.0) -> Figure:
    """A grid of frames (rows: sequences, columns: evenly spaced frames) with the true boxes.

    ``sequences`` are ``pulkit.data.sequences.Sequence``; boxes are 0-based ``[x, y, w, h]`` in
    pixels, drawn in ``TRUE_GT`` blue; frames where the target is absent (NaN row) say so.
    Unlabeled sequences show frames only.
    """
    seqs = list(sequences)[:max_sequences]
    if not seqs:
        raise ValueError("plot_sample_frames: no sequences given")
    fig, axes = new_figure(len(seqs), n_frames, width=width, height=width / n_frames * 0.8 * len(seqs))
    for row, seq in zip(axes, seqs):
        idx = np.unique(np.linspace(0, len(seq) - 1, n_frames).round().astype(int))
        for ax in row:
            ax.set_axis_off()
        for ax, i in zip(row, idx):
            ax.imshow(seq.image(int(i)))
            ax.set_title(f"{seq.name} #{i}", fontsize=7)
            box = None if seq.boxes is None else seq.boxes[i]
            if box is not None and np.all(np.isfinite(box)):
                draw_box(ax, box, TRUE_GT)
            elif box is not None:
                ax.text(0.5, 0.5, "target absent", transform=ax.transAxes, ha="center", va="center",
                        color="white", fontsize=7, bbox=dict(facecolor="black", alpha=0.5, lw=0))
    return fig


def plot_frame(seq: Any, i: int, width: float = 5.0) -> Figure:
    """Frame ``i`` of ``seq`` with its true box (blue), when it has one."""
    fig, axes = new_figure(1, 1, width=width)
    ax = axes[0, 0]
    ax.imshow(seq.image(int(i)))
    ax.set_axis_off()
    ax.set_title(f"{seq.name} #{i}", fontsize=8)
    box = None if seq.boxes is None else seq.boxes[int(i)]
    if box is not None and np.all(np.isfinite(box)):
        draw_box(ax, box, TRUE_GT)
    return fig


