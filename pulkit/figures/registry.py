"""Every exported figure by name: ``FIGURES[name](profile)`` rebuilds it from saved results alone,
``export_figures`` writes them all (``pulkit figures``).  The registry imports the figure modules,
never the other way round."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Sequence

import matplotlib
from matplotlib.figure import Figure

from pulkit.core import paths
from pulkit.core.results import MissingResultsError
from pulkit.figures import (
    background_discrimination,
    benchmarks,
    noise_robustness,
    qualitative,
    sectionB_taylor,
    temporal_correspondence,
    training,
)
from pulkit.figures.style import NotMeasured, save_figure, style_rc

# name (the exported file stem) -> from_results(profile) -> Figure: each figure module's ``<name>`` draws
# it from data and ``<name>_from_results`` from saved results alone.
_MODULES = {
    background_discrimination: ("fig1_ahm_batch", "fig2_rss_batch", "ahm_claim"),
    temporal_correspondence: ("tc_training_curves", "tc_pairs_gallery", "tc_mining_error", "rounds_claim"),
    training: ("training_curves",),
    noise_robustness: ("fig3_noise_response_maps", "fig4_noise50", "fig6_accuracy_vs_noise", "noise_label_fit"),
    sectionB_taylor: ("sectionB_taylor",),
    qualitative: ("fig5_qualitative", "fig7_failures"),
    benchmarks: ("claims_forest",),
}
FIGURES: dict[str, Callable[[str], Figure]] = {
    name: getattr(module, f"{name}_from_results") for module, names in _MODULES.items() for name in names}


def export_figures(profile: str, names: Sequence[str] | None = None, seed: int | None = None,
                   out_dir: str | Path | None = None,
                   registry: dict[str, Callable[[str], Figure]] | None = None,
                   skipped: dict[str, NotMeasured] | None = None
                   ) -> tuple[dict[str, tuple[Path, Path]], dict[str, MissingResultsError]]:
    """Re-export figures from saved results: ``(made {name: (pdf, png)}, missing {name: error})``.

    ``seed`` defaults to the seed recorded in the profile's results files (``results_seed``).
    A figure whose results are missing is reported, not faked; one the profile does not measure
    (``NotMeasured``) goes into ``skipped`` when a dict is given; any other error propagates.
    """
    registry = FIGURES if registry is None else registry
    unknown = [n for n in names or () if n not in registry]
    if unknown:
        raise KeyError(f"unknown figure(s) {unknown}; registered: {sorted(registry)}")
    seed = results_seed(profile) if seed is None else seed
    made: dict[str, tuple[Path, Path]] = {}
    missing: dict[str, MissingResultsError] = {}
    for name in names or sorted(registry):
        try:
            with matplotlib.rc_context(style_rc()):     # the notebooks' house style, without leaking it
                made[name] = save_figure(registry[name](profile), name, profile, seed, out_dir)
        except MissingResultsError as e:
            missing[name] = e
        except NotMeasured as e:
            if skipped is None:
                raise
            skipped[name] = e
    return made, missing


def results_seed(profile: str) -> int | None:
    """The seed recorded in the provenance of ``results/<profile>/*.json`` (None if none or several)."""
    seeds = set()
    for f in sorted(paths.results_dir(profile).glob("[0-9][0-9]_*.json")):
        try:
            seeds.add(json.loads(f.read_text()).get("provenance", {}).get("seed"))
        except (OSError, ValueError, AttributeError):
            continue
    seeds.discard(None)
    return seeds.pop() if len(seeds) == 1 else None
