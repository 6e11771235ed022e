"""Figures: one style, one export path, one function per supplementary figure.

* ``setup_style()`` applies the one house style (seaborn ``paper`` context, DejaVu Sans, a fixed
  colour cycle) to matplotlib; ``style_rc()`` is the same as a dict for ``plt.rc_context``.
* Colours follow the supplementary's conventions: noisy ground truth ``NOISY_GT`` (cyan), true
  ground truth ``TRUE_GT`` (blue), the NR-trained tracker ``NR`` (red), the BCE-trained one ``BCE``
  (green).
* ``save_figure(fig, name, profile, seed)`` writes ``figures/<profile>/<name>.pdf`` and ``.png``
  with the commit, profile and seed in the files' metadata and nothing that changes between runs
  (no dates, fixed dpi), so saving the same figure twice gives byte-identical files.
* ``FIGURES`` maps each exported figure's name to a ``from_results(profile) -> Figure`` function
  that rebuilds it from saved results alone; ``pulkit figures --profile P`` exports them all.

Figures are built on ``matplotlib.figure.Figure`` objects (``new_figure``), never on pyplot's
global figure list; a notebook shows one by making it the cell's last expression.
"""
from __future__ import annotations

import io
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from matplotlib.figure import Figure

from . import paths
from .io import atomic_write_bytes
from .notebook import MissingResultsError, load_results
from .provenance import git_commit, git_dirty

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
    import matplotlib

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
    import matplotlib

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
    import matplotlib

    if not name or "/" in name or name.startswith("."):
        raise ValueError(f"figure name {name!r}: expected a plain file stem like 'fig6_noise_auc'")
    out = Path(out_dir) if out_dir is not None else paths.figures_dir() / profile
    meta = figure_metadata(name, profile, seed)
    rendered = {}
    with matplotlib.rc_context({"pdf.fonttype": 42, "svg.hashsalt": "pulkit", "pdf.compression": 6}):
        for ext in ("pdf", "png"):
            buf = io.BytesIO()
            fig.savefig(buf, format=ext, dpi=FIGURE_DPI.get(name, DPI), metadata=meta[ext], facecolor="white")
            rendered[ext] = buf.getvalue()
    # both rendered before either is written: a figure that fails to render leaves the old pair intact
    return tuple(atomic_write_bytes(out / f"{name}.{ext}", data) for ext, data in rendered.items())


# --------------------------------------------------------------------------- data figures (not exported)
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
                x, y, w, h = box
                # pixel centres sit at integer coordinates: a box covering pixels x..x+w-1 has edges x-0.5, x+w-0.5
                ax.add_patch(_rectangle((x - 0.5, y - 0.5), w, h, TRUE_GT))
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
        ax.add_patch(_rectangle((box[0] - 0.5, box[1] - 0.5), box[2], box[3], TRUE_GT))
    return fig


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


def _rectangle(xy: tuple[float, float], w: float, h: float, color: str):
    from matplotlib.patches import Rectangle

    return Rectangle(xy, w, h, fill=False, edgecolor=color, linewidth=1.5)


# --------------------------------------------------------------------------- supplementary figures
# One section per figure, added by the notebook that regenerates it:
#
#     def plot_fig6(table: pandas.DataFrame, ...) -> Figure:            # from plain data
#         ...
#     def fig6_from_results(profile: str) -> Figure:                    # from saved results only
#         return plot_fig6(load_results(profile, "04_noise_robustness")["auc"], ...)
#
# and one entry in FIGURES below.  ``from_results`` functions read files only (``load_results``
# raises MissingResultsError naming the notebook to run); they never train or track.


# --------------------------------------------------------------------------- noise experiment (notebook 04)
def _noise_figure(name: str) -> Callable[[str], Figure]:
    """``pulkit.figs_noise.<name>``, imported when first called (keeps this module light)."""
    def from_results(profile: str) -> Figure:
        from . import figs_noise

        return getattr(figs_noise, name)(profile)

    from_results.__name__ = name
    return from_results


# --------------------------------------------------------------------------- qualitative (notebook 06)
def _qualitative_figure(name: str) -> Callable[[str], Figure]:
    """``pulkit.figs_qualitative.<name>``, imported when first called (keeps this module light)."""
    def from_results(profile: str) -> Figure:
        from . import figs_qualitative

        return getattr(figs_qualitative, name)(profile)

    from_results.__name__ = name
    return from_results


# --------------------------------------------------------------------------- Section B (notebook 05)
def _sectionB_figure(profile: str) -> Figure:
    """``pulkit.figs_taylor.sectionB_from_results``, imported when first called (keeps this module light)."""
    from . import figs_taylor

    return figs_taylor.sectionB_from_results(profile)


# --------------------------------------------------------------------------- TC and training (notebooks 02, 03)
def _tc_figure(name: str) -> Callable[[str], Figure]:
    """``pulkit.figs_tc.<name>``, imported when first called (keeps this module light)."""
    def from_results(profile: str) -> Figure:
        from . import figs_tc

        return getattr(figs_tc, name)(profile)

    from_results.__name__ = name
    return from_results


# --------------------------------------------------------------------------- background discrimination (notebook 01)
def _bd_figure(name: str) -> Callable[[str], Figure]:
    """``pulkit.figs_bd.<name>``, imported when first called (keeps this module light)."""
    def from_results(profile: str) -> Figure:
        from . import figs_bd

        return getattr(figs_bd, name)(profile)

    from_results.__name__ = name
    return from_results


# --------------------------------------------------------------------------- registry
# name -> from_results(profile) -> Figure; the name is the exported file stem.
FIGURES: dict[str, Callable[[str], Figure]] = {
    "sectionB_taylor": _sectionB_figure,
    "fig3_noise_response_maps": _noise_figure("fig3_from_results"),
    "fig4_noise50": _noise_figure("fig4_from_results"),
    "fig6_auc_vs_noise": _noise_figure("fig6_from_results"),
    "fig5_qualitative": _qualitative_figure("fig5_from_results"),
    "fig7_failures": _qualitative_figure("fig7_from_results"),
    "fig1_ahm_batch": _bd_figure("fig1_from_results"),
    "fig2_rss_batch": _bd_figure("fig2_from_results"),
    "tc_pairs_gallery": _tc_figure("gallery_from_results"),
    "tc_mining_error": _tc_figure("mining_error_from_results"),
    "tc_training_curves": _tc_figure("tc_curves_from_results"),
    "training_curves": _tc_figure("training_curves_from_results"),
}


def export_figures(profile: str, names: Sequence[str] | None = None, seed: int | None = None,
                   out_dir: str | Path | None = None,
                   registry: dict[str, Callable[[str], Figure]] | None = None
                   ) -> tuple[dict[str, tuple[Path, Path]], dict[str, MissingResultsError]]:
    """Re-export figures from saved results: ``(made {name: (pdf, png)}, missing {name: error})``.

    ``seed`` defaults to the seed recorded in the profile's results files (``results_seed``).
    A figure whose results are missing is reported, not faked; any other error propagates.
    """
    registry = FIGURES if registry is None else registry
    unknown = [n for n in names or () if n not in registry]
    if unknown:
        raise KeyError(f"unknown figure(s) {unknown}; registered: {sorted(registry)}")
    seed = results_seed(profile) if seed is None else seed
    import matplotlib

    made: dict[str, tuple[Path, Path]] = {}
    missing: dict[str, MissingResultsError] = {}
    for name in names or sorted(registry):
        try:
            with matplotlib.rc_context(style_rc()):     # the notebooks' house style, without leaking it
                made[name] = save_figure(registry[name](profile), name, profile, seed, out_dir)
        except MissingResultsError as e:
            missing[name] = e
    return made, missing


def results_seed(profile: str) -> int | None:
    """The seed recorded in the provenance of ``results/<profile>/*.json`` (None if none or several)."""
    import json

    seeds = set()
    for f in sorted(paths.results_dir(profile).glob("[0-9][0-9]_*.json")):
        try:
            seeds.add(json.loads(f.read_text()).get("provenance", {}).get("seed"))
        except (OSError, ValueError, AttributeError):
            continue
    seeds.discard(None)
    return seeds.pop() if len(seeds) == 1 else None


__all__ = ["setup_style", "style_rc", "new_figure", "save_figure", "figure_metadata", "plot_sample_frames",
           "FIGURES", "export_figures", "results_seed", "NOISY_GT", "TRUE_GT", "NR", "BCE", "PALETTE",
           "TRACKER_COLORS", "load_results"]
