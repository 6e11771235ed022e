"""Figures of notebook 01 (supplementary A and C): Fig. 1 (an AHM mini-batch, anchor top-left),
Fig. 2 (an RSS mini-batch), the BD training curves, AHM vs RSS batch hardness and the claim
"AHM helps small batches" (``ahm_claim``: localisation accuracy per sampler and batch size)."""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np
from matplotlib.figure import Figure

from pulkit.core import artifacts
from pulkit.core.results import load_arrays, load_results
from pulkit.figures.style import NR, PALETTE, crop_mosaic, draw_box, new_figure

NOTEBOOK = "01_background_discrimination"
SAMPLERS = ("ahm", "rss")
SAMPLER_COLORS = {"ahm": NR, "rss": PALETTE[0]}
RUN_COLORS = {"ahm_alexnet": NR, "rss_alexnet": PALETTE[0], "ahm_ciresnet22": PALETTE[1]}
RUN_LABELS = {"ahm_alexnet": "AHM, AlexNet", "rss_alexnet": "RSS, AlexNet", "ahm_ciresnet22": "AHM, CIResNet-22"}


# --------------------------------------------------------------------------- Figs. 1 and 2
def plot_batch(crops: np.ndarray, title: str, anchor: bool = False, ncols: int | None = None,
               width: float = 6.0) -> Figure:
    """One mini-batch as a grid of crops; ``anchor``: outline the first (top-left) crop in red."""
    image, ncols = crop_mosaic(crops, ncols, gap=3)
    fig, axes = new_figure(1, 1, width=width, height=width * image.shape[0] / image.shape[1] + 0.45)
    ax = axes[0, 0]
    ax.imshow(image, interpolation="none")     # embedded at the crops' own resolution in the PDF
    ax.set_axis_off()
    ax.set_title(title, fontsize=8)
    if anchor:
        h, w = np.asarray(crops).shape[1:3]
        draw_box(ax, (0, 0, w, h), NR, lw=2.0)
        ax.text(2, 2, "anchor", color="white", fontsize=6, va="top", ha="left",
                bbox=dict(facecolor=NR, edgecolor="none", pad=1.0))
    return fig


def _batch(batches: Mapping[str, Any], sampler: str) -> Mapping[str, Any]:
    if not isinstance(batches, Mapping) or sampler not in batches or "crops" not in batches[sampler]:
        raise ValueError(f"expected bd_batches' output or load_batches(profile) with {sampler!r} crops, "
                         f"got {type(batches).__name__} with keys {list(batches) if isinstance(batches, Mapping) else []}")
    return batches[sampler]


def fig1_ahm_batch(batches: Mapping[str, Any], width: float = 6.0) -> Figure:
    """Fig. 1: the AHM mini-batch, anchor top-left (outlined), its nearest neighbours row by row."""
    rec = _batch(batches, "ahm")
    b = len(rec["crops"])
    return plot_batch(rec["crops"], f"AHM mini-batch (B = {b}, un-augmented): the anchor and its {b - 1} nearest "
                      f"neighbours; hardness {float(rec['hardness']):.3f}", anchor=True, width=width)


def fig2_rss_batch(batches: Mapping[str, Any], width: float = 6.0) -> Figure:
    """Fig. 2: the RSS mini-batch (uniformly drawn candidates), same layout as Fig. 1."""
    rec = _batch(batches, "rss")
    b = len(rec["crops"])
    return plot_batch(rec["crops"], f"RSS mini-batch (B = {b}, un-augmented): random candidates; "
                      f"hardness {float(rec['hardness']):.3f}", width=width)


# --------------------------------------------------------------------------- training curves and hardness
def _columns(curve: Any, name: str) -> dict[str, np.ndarray]:
    get = curve.__getitem__
    try:
        return {k: np.asarray(get(k), dtype=float) for k in ("step", "loss", "hardness")}
    except (KeyError, TypeError):
        raise ValueError(f"curve {name!r}: needs step, loss and hardness columns") from None


def plot_bd_curves(curves: Mapping[str, Any], width: float = 9.0) -> Figure:
    """(a) InfoNCE loss and (b) logged batch hardness against the training step, one line per run."""
    if not curves:
        raise ValueError("plot_bd_curves: no training curves given")
    fig, axes = new_figure(1, 2, width=width, height=width * 0.36)
    for k, (name, curve) in enumerate(curves.items()):
        c = _columns(curve, name)
        style = dict(color=RUN_COLORS.get(name, PALETTE[k % len(PALETTE)]), label=RUN_LABELS.get(name, name),
                     marker="o" if len(c["step"]) < 12 else None, ms=3)
        axes[0, 0].plot(c["step"], c["loss"], **style)
        axes[0, 1].plot(c["step"], c["hardness"], **style)
    axes[0, 0].set_ylabel("InfoNCE loss")
    axes[0, 0].set_title("(a) training loss (AHM batches are harder by design)", fontsize=9)
    axes[0, 1].set_ylabel("batch hardness (anchor cosine sim.)")
    axes[0, 1].set_title("(b) hardness of the training batches, current bank", fontsize=9)
    for ax in axes[0]:
        ax.set_xlabel("step")
        ax.legend(fontsize=7)
    return fig


def plot_hardness(hardness: Mapping[str, Mapping[str, Any]], width: float = 5.0) -> Figure:
    """AHM vs RSS batch hardness under each bank: a dot per batch, mean +- std beside them."""
    if not hardness:
        raise ValueError("plot_hardness: no hardness statistics given")
    fig, axes = new_figure(1, 1, width=width, height=width * 0.7)
    ax = axes[0, 0]
    rng = np.random.default_rng(0)                 # horizontal jitter of the dots only
    for i, (bank, st) in enumerate(hardness.items()):
        for j, s in enumerate(("ahm", "rss")):
            x = i * 3 + j
            v = np.asarray(st[s]["values"], dtype=float)
            ax.plot(x - 0.15 + rng.uniform(-0.12, 0.12, len(v)), v, ".", ms=3, alpha=0.5, color=SAMPLER_COLORS[s])
            ax.errorbar(x + 0.2, st[s]["mean"], yerr=st[s]["std"], fmt="o", ms=5, capsize=4,
                        color=SAMPLER_COLORS[s], label=s.upper() if i == 0 else None)
    ax.set_xticks([i * 3 + 0.5 for i in range(len(hardness))],
                  [f"bank of the {RUN_LABELS.get(b, b)} model" for b in hardness], fontsize=7)
    ax.set_ylabel("batch hardness (anchor cosine sim.)")
    n = next(iter(hardness.values()))
    ax.set_title(f"AHM vs RSS: {n['n_batches']} batches of B = {n['batch_size']} each, mean ± std", fontsize=9)
    ax.legend(fontsize=7)
    return fig


# --------------------------------------------------------------------------- claim: AHM helps small batches
Z95 = 1.96                   # half-width of a 95 % normal interval, in standard errors
REFERENCE_COLOR = PALETTE[5]  # grey: the untrained random_bn reference


def _claim_parts(data: Mapping[str, Any]) -> tuple[list[int], list[Mapping], list[Mapping], dict[int, Mapping]]:
    try:
        batches = [int(b) for b in data["batches"]]
        runs, ref = list(data["runs"]), list(data["random_bn"])
        claims = {int(r["batch_size"]): r for r in data["claims"] if r.get("role") == "claim"}
    except (KeyError, TypeError):
        raise ValueError("ahm_claim: expected ahm_small_batch_claim's output (or load_claim(profile)) with batches, "
                         "runs, random_bn and claims") from None
    if not batches or not runs or not ref:
        raise ValueError("ahm_claim: no batch sizes, runs or random_bn scores given")
    absent = [b for b in batches if b not in claims]
    if absent:
        raise ValueError(f"ahm_claim: no AHM vs RSS claim record for B = {absent}")
    return batches, runs, ref, claims


def ahm_claim(data: Mapping[str, Any], width: float = 9.0) -> Figure:
    """The claim "AHM helps small batches": (a) localisation accuracy of every BD run per batch size
    (a dot per seed with its 95 % interval over the pairs, a bar at the mean over seeds; AHM left, RSS
    right), the untrained ``random_bn`` reference as a dashed line (mean over its seeds); (b) AHM - RSS
    paired over the same pairs: a dot per seed, the combined difference with its 95 % interval and the verdict."""
    batches, runs, ref, claims = _claim_parts(data)
    fig, axes = new_figure(1, 2, width=width, height=width * 0.42)
    ax, bx = axes[0]
    for i, b in enumerate(batches):
        for j, s in enumerate(SAMPLERS):
            rs = [r for r in runs if int(r["batch_size"]) == b and r["sampler"] == s]
            x = i * 3 + j
            xs = x + np.linspace(-0.15, 0.15, len(rs)) if len(rs) > 1 else np.full(len(rs), float(x))
            acc = np.array([float(r["accuracy"]) for r in rs])
            ax.errorbar(xs, acc, yerr=Z95 * np.array([float(r["accuracy_se"]) for r in rs]), fmt="o", ms=4,
                        capsize=2, color=SAMPLER_COLORS[s], label=s.upper() if i == 0 else None)
            if len(acc):
                ax.hlines(acc.mean(), x - 0.3, x + 0.3, color=SAMPLER_COLORS[s], lw=2)
    level = float(np.mean([float(r["accuracy"]) for r in ref]))
    ax.axhline(level, color=REFERENCE_COLOR, ls="--", lw=1.2,
               label=f"random_bn (untrained, {len(ref)} seed{'s' if len(ref) > 1 else ''})")
    ax.set_xticks([i * 3 + 0.5 for i in range(len(batches))], [f"B = {b}" for b in batches])
    ax.set_ylabel("localisation accuracy")
    ax.set_title(f"(a) BD backbones on {data.get('pairs', '?')} held-out pairs", fontsize=9)
    ax.legend(fontsize=7)
    for i, b in enumerate(batches):
        r = claims[b]
        per = [float(p["diff"]) for p in r.get("per_seed", [])]
        bx.plot(i + np.linspace(-0.12, 0.12, len(per)) if len(per) > 1 else [i] * len(per), per, ".", ms=6,
                color=SAMPLER_COLORS["ahm"], alpha=0.6, label="one seed" if i == 0 and per else None)
        bx.errorbar([i + 0.3], [float(r["diff"])], yerr=[Z95 * float(r["se"])], fmt="s", ms=6, capsize=4,
                    color="black", label="combined, 95 % CI" if i == 0 else None)
        bx.annotate(r["verdict"], (i + 0.3, float(r["diff"]) + Z95 * float(r["se"])), textcoords="offset points",
                    xytext=(0, 4), ha="center", fontsize=7)
    bx.axhline(0.0, color="black", lw=0.8)
    bx.set_xticks(range(len(batches)), [f"B = {b}\n({len(claims[b]['seeds'])} seed{'s' if len(claims[b]['seeds']) > 1 else ''})"
                                        for b in batches])
    bx.set_xlim(-0.6, len(batches) - 0.2)
    bx.set_ylabel("AHM - RSS accuracy (same pairs)")
    bx.set_title("(b) the claim: AHM - RSS > 0 at small B", fontsize=9)
    bx.legend(fontsize=7)
    return fig


def load_claim(profile: str) -> dict[str, Any]:
    """The ``ahm_claim`` data of ``01_background_discrimination.json`` with its ``claims`` records; results
    written without the claim experiment raise ``MissingResultsError`` naming notebook 01."""
    r = load_results(profile, NOTEBOOK)
    if "ahm_claim" not in r or "claims" not in r:
        raise artifacts.missing(artifacts.results_path(profile, NOTEBOOK), profile,
                                "AHM vs RSS claim of notebook 01", state="absent from its results (an older run)")
    return {**r["ahm_claim"], "claims": r["claims"]}


def ahm_claim_from_results(profile: str) -> Figure:
    return ahm_claim(load_claim(profile))


# --------------------------------------------------------------------------- from results files
def load_batches(profile: str) -> dict[str, Any]:
    """The Fig. 1 / 2 batches of ``01_background_discrimination.json`` with their crops from its ``.npz``."""
    batches = load_results(profile, NOTEBOOK)["batches"]
    crops = load_arrays(profile, NOTEBOOK)
    for s in SAMPLERS:
        want = len(batches[s]["cand_ids"])
        if s not in crops or len(crops[s]) != want:
            raise ValueError(f"results of {NOTEBOOK}: the arrays hold {len(crops.get(s, ()))} {s} crops but the JSON "
                             f"lists {want} candidates (files from different runs: re-run notebook 01)")
        batches[s]["crops"] = crops[s]
    return batches


def fig1_ahm_batch_from_results(profile: str) -> Figure:
    return fig1_ahm_batch(load_batches(profile))


def fig2_rss_batch_from_results(profile: str) -> Figure:
    return fig2_rss_batch(load_batches(profile))


def bd_curves_from_results(profile: str) -> Figure:
    return plot_bd_curves(load_results(profile, NOTEBOOK)["curves"])


def hardness_from_results(profile: str) -> Figure:
    return plot_hardness(load_results(profile, NOTEBOOK)["hardness"])
