"""The house style of every figure: colours, fonts, ``new_figure``, ``save_figure`` (byte-identical
exports with provenance in their metadata), and the two drawing primitives the figures share:
``draw_box`` and ``crop_mosaic``."""
from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from pulkit.core import paths
from pulkit.core.io import atomic_write_bytes
from pulkit.core.provenance import git_commit, git_dirty

# --------------------------------------------------------------------------- style
FONT = "DejaVu Sans"          # ships with matplotlib: the same glyphs on every machine
DPI = 200                     # PNG resolution (dots per inch); PDFs are vector
# Grids of whole video frames: lower, so their PNG and PDF (frames are embedded resampled to this dpi)
# stay under 2 MB each (a 9-sequence Fig. 5 was 3.5 MB at 200 dpi).
FIGURE_DPI = {"fig5_qualitative": 120, "fig7_failures": 120}
NOISY_GT = "#00c8e6"          # cyan: annotation with noise applied (Figs. 3, 4)
TRUE_GT = "#1f3fbf"           # blue: the true annotation
NR = "#d62728"                # red: tracker trained with the NR loss
BCE = "#2ca02c"               # green: tracker trained with balanced BCE
# Further series (trackers, samplers, sequences) take these in order.
PALETTE = ("#1f77b4", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")
TRACKER_COLORS = {"AlexPUL": NR, "ResPUL": "#ff7f0e", "SiamFC": BCE, "SiamDW": "#9467bd"}


class NotMeasured(ValueError):
    """Results that exist but hold nothing a figure draws, by the profile's design (e.g. ``noise_label_fit``
    where every step drew fresh pairs): reported as such by ``pulkit figures``, never drawn empty."""


def style_rc() -> dict[str, Any]:
    """The house style as matplotlib rcParams."""
    import seaborn as sns
    from cycler import cycler

    rc: dict[str, Any] = {}
    rc.update(sns.axes_style("whitegrid"))
    rc.update(sns.plotting_context("paper"))
    rc.update({
        "font.family": "sans-serif",
        "font.sans-serif": [FONT],
        "axes.prop_cycle": cycler(color=list(PALETTE)),
        "image.cmap": "viridis",
        "figure.dpi": 100,
        "savefig.dpi": DPI,
        "pdf.fonttype": 42,   # embed TrueType: text stays text
        "ps.fonttype": 42,
        "svg.hashsalt": "pulkit",
    })
    return rc


def setup_style() -> None:
    """Apply the house style to matplotlib (call once at the top of a notebook).

    Inside IPython / Jupyter it also turns on inline display, so a ``Figure`` that is a cell's last
    expression is shown (PNG at the house dpi).
    """
    matplotlib.rcParams.update(style_rc())
    try:
        from IPython import get_ipython
    except ImportError:
        return
    shell = get_ipython()
    if shell is not None and hasattr(shell, "kernel"):
        from matplotlib_inline.backend_inline import set_matplotlib_formats

        shell.run_line_magic("matplotlib", "inline")
        set_matplotlib_formats("png")


def new_figure(nrows: int = 1, ncols: int = 1, *, width: float = 6.0, height: float | None = None,
               **subplot_kw: Any) -> tuple[Figure, np.ndarray]:
    """A ``Figure`` (not registered with pyplot) and its axes as a 2-D array; sizes in inches."""
    fig = Figure(figsize=(width, height if height is not None else width * 0.75 * nrows / max(ncols, 1)),
                 layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False, **subplot_kw)
    return fig, axes


# --------------------------------------------------------------------------- export
def figure_metadata(name: str, profile: str, seed: int | None) -> dict[str, dict[str, Any]]:
    """PNG text chunks and PDF info-dict entries for a figure: provenance, and no dates."""
    commit = git_commit() + ("+dirty" if git_dirty() else "")
    seed_s = "unknown" if seed is None else str(int(seed))
    prov = f"commit={commit} profile={profile} seed={seed_s}"
    software = f"pulkit, matplotlib {matplotlib.__version__}"
    png = {"Title": name, "Software": software, "Description": f"pulkit figure {name}: {prov}",
           "pulkit:commit": commit, "pulkit:profile": profile, "pulkit:seed": seed_s}
    pdf = {"Title": name, "Creator": software, "Producer": software, "Subject": f"pulkit figure {name}: {prov}",
           "Keywords": prov, "CreationDate": None, "ModDate": None}
    return {"png": png, "pdf": pdf}


def save_figure(fig: Figure, name: str, profile: str, seed: int | None,
                out_dir: str | Path | None = None) -> tuple[Path, Path]:
    """Write ``<out_dir>/<name>.pdf`` and ``.png`` (default ``figures/<profile>/``) atomically.

    The commit, profile and seed go into the metadata of both files (PNG text chunks, PDF info
    dict ``Subject`` / ``Keywords``); dates are left out and the dpi is fixed per name (``DPI``, or
    ``FIGURE_DPI`` for frame grids), so two saves of the same figure are byte-identical.
    Returns ``(pdf_path, png_path)``.
    """
    if not name or "/" in name or name.startswith("."):
        raise ValueError(f"figure name {name!r}: expected a plain file stem like 'fig6_noise_auc'")
    out = Path(out_dir) if out_dir is not None else paths.run_figures_dir(profile)
    meta = figure_metadata(name, profile, seed)
    rendered = {}
    with matplotlib.rc_context({"pdf.fonttype": 42, "svg.hashsalt": "pulkit", "pdf.compression": 6}):
        for ext in ("pdf", "png"):
            buf = io.BytesIO()
            fig.savefig(buf, format=ext, dpi=FIGURE_DPI.get(name, DPI), metadata=meta[ext], facecolor="white")
            rendered[ext] = buf.getvalue()
    # both rendered before either is written: a figure that fails to render leaves the old pair intact
    return tuple(atomic_write_bytes(out / f"{name}.{ext}", data) for ext, data in rendered.items())


# --------------------------------------------------------------------------- drawing primitives
def draw_box(ax, box, color: str, *, origin=(0.0, 0.0), lw: float = 1.5, ls: str = "-",
             label: str | None = None) -> Rectangle | None:
    """Outline the pixel box ``[x, y, w, h]`` (0-based, ``origin`` subtracted) on ``ax``; returns the patch.

    Pixel centres sit at integer coordinates, so a box over pixels x..x+w-1 has edges x-0.5 and
    x+w-0.5.  A box with a non-finite value (target absent) draws nothing and returns None.
    """
    b = np.asarray(box, dtype=np.float64)
    if b.shape != (4,) or not np.isfinite(b).all():
        return None
    patch = Rectangle((b[0] - origin[0] - 0.5, b[1] - origin[1] - 0.5), b[2], b[3], fill=False,
                      edgecolor=color, linewidth=lw, linestyle=ls, label=label)
    ax.add_patch(patch)
    return patch


def crop_mosaic(crops, ncols: int | None = None, gap: int = 2, what: str = "crops") -> tuple[np.ndarray, int]:
    """Crops (B x H x W x 3 uint8, or a list of equal-shape ones) as one row-major grid with white gaps.

    Returns ``(mosaic, ncols)``; ``ncols`` defaults to ceil(sqrt(B)).  Crop k's top-left pixel is
    ``((H + gap) * (k // ncols), (W + gap) * (k % ncols))``.
    """
    arrs = [np.asarray(c) for c in crops]
    if not arrs:
        raise ValueError(f"crop_mosaic: {what} is empty (expected a non-empty batch of H x W x 3 uint8 crops)")
    shape = arrs[0].shape
    for k, a in enumerate(arrs):
        if a.dtype != np.uint8 or a.ndim != 3 or a.shape[2] != 3:
            raise ValueError(f"crop_mosaic: {what}[{k}] must be an H x W x 3 uint8 RGB crop, got {a.dtype} {a.shape}")
        if a.shape != shape:
            raise ValueError(f"crop_mosaic: {what}[{k}] has shape {a.shape}, crop 0 has {shape}; "
                             f"crops of one batch must share a size")
    b, (h, w, _) = len(arrs), shape
    ncols = int(ncols or math.ceil(math.sqrt(b)))
    nrows = math.ceil(b / ncols)
    out = np.full((nrows * (h + gap) - gap, ncols * (w + gap) - gap, 3), 255, np.uint8)
    for k, a in enumerate(arrs):
        r, c = divmod(k, ncols)
        out[r * (h + gap):r * (h + gap) + h, c * (w + gap):c * (w + gap) + w] = a
    return out, ncols
