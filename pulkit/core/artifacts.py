"""Every file the pipeline writes, and the notebook that produces it, declared once.

Checkpoints live in ``checkpoints/<profile>/``, results in ``results/<profile>/`` as
``<notebook>.json`` (+ ``<notebook>.npz`` arrays, ``<notebook>/`` other files); ``producer(path)``
names the notebook that writes any of them, and ``missing(...)`` is the one error for an absent input.
"""
from __future__ import annotations

import re
from pathlib import Path

from pulkit.core import paths

# The notebooks in run order (``notebooks/<name>.ipynb``); each one's results files carry its name.
NOTEBOOKS: tuple[str, ...] = (
    "00_data",
    "01_background_discrimination",
    "02_temporal_correspondence",
    "03_training",
    "04_noise_robustness",
    "05_sectionB_taylor",
    "06_qualitative",
    "07_benchmarks",
)

SAMPLERS = ("ahm", "rss")
LOSSES = ("nr", "bce")
BACKBONES = ("alexnet", "ciresnet22")


def _check(value: str, valid: tuple[str, ...], what: str) -> str:
    if value not in valid:
        raise ValueError(f"unknown {what} {value!r}; valid: {', '.join(valid)}")
    return value


def bd_checkpoint(profile: str, sampler: str = "ahm", backbone: str = "alexnet") -> Path:
    return paths.checkpoints_dir(profile) / f"bd_{_check(sampler, SAMPLERS, 'sampler')}_{_check(backbone, BACKBONES, 'backbone')}.pt"


def bd_claim_checkpoint(profile: str, sampler: str, batch_size: int, seed: int) -> Path:
    """Notebook 01's AHM-vs-RSS runs at batch size ``batch_size`` (AlexNet): ``bd_claim/bd_<sampler>_b<B>_s<seed>.pt``."""
    return (paths.checkpoints_dir(profile) / "bd_claim"
            / f"bd_{_check(sampler, SAMPLERS, 'sampler')}_b{int(batch_size)}_s{int(seed)}.pt")


def tc_dir(profile: str, loss: str = "nr", backbone: str = "alexnet") -> Path:
    return paths.checkpoints_dir(profile) / f"tc_{_check(loss, LOSSES, 'loss')}_{_check(backbone, BACKBONES, 'backbone')}"


def tc_checkpoint(profile: str, round_idx: int, loss: str = "nr", backbone: str = "alexnet") -> Path:
    return tc_dir(profile, loss, backbone) / f"tc_round{int(round_idx)}.pt"   # the name run_progressive writes


def pairs_table(profile: str, round_idx: int, loss: str = "nr", backbone: str = "alexnet") -> Path:
    return tc_dir(profile, loss, backbone) / f"pairs_round{int(round_idx)}.csv"


def rounds_controls_dir(profile: str) -> Path:
    """The rounds claim's controls (notebook 02): ``no_remine.pt`` (the same steps in one round on round-1
    pairs), ``random_bn_init.pt`` and ``from_random_bn_round1.pt`` (round 1 mined and learned from random_bn)."""
    return paths.checkpoints_dir(profile) / "tc_controls"


def rounds_seed_dir(profile: str, seed: int) -> Path:
    """The rounds claim's runs at a seed other than the main run's: ``run_progressive``'s files (``tc_round{r}.pt``,
    ``pairs_round{r}.*``, ...) and ``no_remine.pt``, both from that seed's BD model: ``tc_controls/seed<seed>/``."""
    return rounds_controls_dir(profile) / f"seed{int(seed)}"


def supervised_checkpoint(profile: str, loss: str = "bce", backbone: str = "alexnet") -> Path:
    return paths.checkpoints_dir(profile) / f"sup_{_check(loss, LOSSES, 'loss')}_{_check(backbone, BACKBONES, 'backbone')}.pt"


def tuning_dir(profile: str) -> Path:
    """Checkpoints of the learning-rate search on the tuning split (``pulkit.tools.tune``)."""
    return paths.checkpoints_dir(profile) / "tuning"


def tuning_path(profile: str) -> Path:
    """The tuning split's measurements, committed: they justify a profile's schedules (README)."""
    return paths.project_root() / "docs" / "tuning" / f"{profile}.json"


def curated_store(dataset: str, key: str) -> Path:
    """``<curated>/<dataset>/<key>/``: one curation of a real training dataset (``pulkit prepare``), ``key``
    the hash of its parameters (``pulkit.data.curate.curation_params``)."""
    return paths.curated_dir() / _check(dataset, CURATED_DATASETS, "curated dataset") / key


CURATED_DATASETS = ("got10k", "vid")
NOISE_LOSSES = ("bce", "nr", "nr_fixed")
NOISE_UNITS = {"px": "n", "size": "f"}     # level prefix in the name: n<px> or f<fraction of sqrt(wh)>


def noise_checkpoint(profile: str, loss: str, noise: float, seed: int, unit: str = "px") -> Path:
    """``noise/<loss>_<n|f><level>_s<seed>.pt``; a level's point is written ``p`` (0.25 -> ``f0p25``)."""
    prefix = NOISE_UNITS[_check(unit, tuple(NOISE_UNITS), "noise unit")]
    level = f"{float(noise):g}".replace(".", "p")
    return paths.checkpoints_dir(profile) / "noise" / f"{_check(loss, NOISE_LOSSES, 'loss')}_{prefix}{level}_s{int(seed)}.pt"


# --------------------------------------------------------------------------- results
def notebook(name: str) -> str:
    """The notebook ``name`` names: a notebook name (``"02_temporal_correspondence"``), its number
    (``"02"``) or a results file name (``"02_temporal_correspondence.json"``)."""
    stem = Path(str(name)).name.split(".")[0]
    for nb in NOTEBOOKS:
        if stem == nb or stem == nb[:2]:
            return nb
    raise ValueError(f"{name!r} names no notebook; notebooks: {', '.join(NOTEBOOKS)}")


def results_path(profile: str, notebook_name: str, ext: str = "json") -> Path:
    """``results/<profile>/<notebook>.<ext>``: the notebook's numbers (json) or arrays (npz)."""
    return paths.results_dir(profile) / f"{notebook(notebook_name)}.{ext}"


def results_folder(profile: str, notebook_name: str) -> Path:
    """``results/<profile>/<notebook>/``: the notebook's other files (frames, tables)."""
    return paths.results_dir(profile) / notebook(notebook_name)


def timings_path(profile: str, notebook_name: str) -> Path:
    """``results/<profile>/timings/NN.json``: wall-clock times, kept apart so results stay reproducible."""
    return paths.results_dir(profile) / "timings" / f"{notebook(notebook_name)[:2]}.json"


def tracking_dir(profile: str) -> Path:
    """``results/<profile>/tracking/<result key>/``: stored per-sequence tracker outputs."""
    return paths.results_dir(profile) / "tracking"


def frames_dir(profile: str) -> Path:
    """The frames Figs. 5 and 7 show (JPEG), written by notebook 06."""
    return results_folder(profile, "06_qualitative") / "frames"


def claims_path(profile: str) -> Path:
    """``results/<profile>/claims.json``: the paper's claims tested at laptop scale, written by notebook 07."""
    return paths.results_dir(profile) / "claims.json"


def table_path(profile: str, name: str) -> Path:
    """A table of notebook 07 (``otb``, ``ablation``, ...) as CSV."""
    if not re.fullmatch(r"[A-Za-z0-9_]+", name):
        raise ValueError(f"table name {name!r}: expected letters, digits and underscores")
    return results_folder(profile, "07_benchmarks") / f"{name}.csv"


# --------------------------------------------------------------------------- producers
_CHECKPOINT_PRODUCERS = (            # checkpoint path below checkpoints/<profile>/ -> notebook
    (re.compile(r"bd_\w+\.pt"), "01_background_discrimination"),
    (re.compile(r"bd_claim/bd_\w+\.pt"), "01_background_discrimination"),
    (re.compile(r"tc_nr_alexnet/.*"), "02_temporal_correspondence"),
    (re.compile(r"tc_controls/.*"), "02_temporal_correspondence"),
    (re.compile(r"(tc_\w+/.*|sup_\w+\.pt)"), "03_training"),
    (re.compile(r"noise/.*"), "04_noise_robustness"),
)
_RESULTS_PRODUCERS = (               # results files not named after their notebook -> notebook
    (re.compile(r"claims\.json"), "07_benchmarks"),
)


def producer(path: str | Path, profile: str) -> str | None:
    """The notebook that writes ``path`` (a checkpoint or results file of ``profile``), or None."""
    path = Path(path)
    for root, rules, by_name in ((paths.checkpoints_dir(profile), _CHECKPOINT_PRODUCERS, False),
                                 (paths.results_dir(profile), _RESULTS_PRODUCERS, True)):
        try:
            rel = path.resolve().relative_to(root.resolve()).as_posix()
        except ValueError:
            continue
        for pattern, nb in rules:
            if pattern.fullmatch(rel):
                return nb
        if not by_name:
            return None
        try:
            return notebook(rel.split("/")[0])
        except ValueError:
            return None
    return None


def tracker_producer(name: str, profile: str, rounds: int) -> str:
    """The notebook that trains tracker ``name`` (a display name of ``tracker_checkpoints``)."""
    known = tracker_checkpoints(profile, rounds)
    if name not in known:
        raise ValueError(f"unknown tracker {name!r}; trackers: {', '.join(known)}")
    return producer(known[name], profile)


class MissingResultsError(FileNotFoundError):
    """A file that an earlier notebook writes does not exist; ``notebook`` names it (or is None)."""

    def __init__(self, message: str, path: Path, notebook: str | None):
        super().__init__(message)
        self.path = path
        self.notebook = notebook


def missing(path: str | Path, profile: str, what: str, state: str = "missing",
            notebook_name: str | None = None) -> MissingResultsError:
    """The error for an absent (or ``state``) input: names the file, its notebook and the command."""
    path = Path(path)
    nb = notebook_name or producer(path, profile)
    how = (f"it is written by notebooks/{nb}.ipynb: run `pulkit reproduce --profile {profile} --only {nb[:2]}`"
           if nb else "no notebook writes it")
    return MissingResultsError(f"{path}: the {what} of profile {profile!r} is {state}; {how}", path, nb)


# The trackers the evaluation notebooks compare, with the checkpoint each comes from.
# Fig. 5's and the headline tables' trackers: the unsupervised PUL trackers and their supervised baselines.
MAIN_TRACKERS: tuple[str, ...] = ("AlexPUL", "ResPUL", "SiamFC (supervised)", "SiamDW (supervised)")


def tracker_checkpoints(profile: str, rounds: int) -> dict[str, Path]:
    """Display name -> checkpoint of every trained tracker of a profile (rounds = cfg.tc.rounds)."""
    out = {
        "AlexPUL": tc_checkpoint(profile, rounds, "nr", "alexnet"),
        "ResPUL": tc_checkpoint(profile, rounds, "nr", "ciresnet22"),
        "SiamFC (supervised)": supervised_checkpoint(profile, "bce", "alexnet"),
        "SiamDW (supervised)": supervised_checkpoint(profile, "bce", "ciresnet22"),
        "BD only (AHM)": bd_checkpoint(profile, "ahm", "alexnet"),
        "BD only (RSS)": bd_checkpoint(profile, "rss", "alexnet"),
    }
    for r in range(1, rounds + 1):
        out[f"TC-NR round {r}"] = tc_checkpoint(profile, r, "nr", "alexnet")
        out[f"TC-BCE round {r}"] = tc_checkpoint(profile, r, "bce", "alexnet")
    return out
