"""Names of everything the pipeline writes, in one place.

Notebooks and ``pulkit figures`` find each other's outputs through these functions, never
through hidden state. Every path lives under ``pulkit.paths`` roots, so ``PULKIT_RESULTS`` /
``PULKIT_CHECKPOINTS`` move them all at once.

Checkpoints (``checkpoints/<profile>/``)
    ``bd_<sampler>_<backbone>.pt``             BD (stage 1); sampler ``ahm`` | ``rss``
    ``tc_<loss>_<backbone>/tc_round<r>.pt``     TC learning after round r (stage 3); loss ``nr`` | ``bce``
    ``tc_<loss>_<backbone>/pairs_round<r>.csv`` the pairs mined for round r (stage 2)
    ``sup_<loss>_<backbone>.pt``                supervised baselines (SiamFC / SiamDW) on ground truth
    ``noise/<loss>_n<noise>_s<seed>.pt``        the noise experiment (supervised, noisy annotations)

Results (``results/<profile>/``)
    ``NN_<name>.json``                          numbers of notebook NN (provenance inside, no timings)
    ``NN_<name>.csv``                           tables of notebook NN
    ``timings/NN.json``                         wall-clock times (kept apart so results are reproducible)
    ``tracking/<result key>/<sequence>.txt``    per-sequence tracker outputs (plain text)
"""
from __future__ import annotations

from pathlib import Path

from . import paths

SAMPLERS = ("ahm", "rss")
LOSSES = ("nr", "bce")
BACKBONES = ("alexnet", "ciresnet22")


def _check(value: str, valid: tuple[str, ...], what: str) -> str:
    if value not in valid:
        raise ValueError(f"unknown {what} {value!r}; valid: {', '.join(valid)}")
    return value


def bd_checkpoint(profile: str, sampler: str = "ahm", backbone: str = "alexnet") -> Path:
    return paths.checkpoints_dir(profile) / f"bd_{_check(sampler, SAMPLERS, 'sampler')}_{_check(backbone, BACKBONES, 'backbone')}.pt"


def tc_dir(profile: str, loss: str = "nr", backbone: str = "alexnet") -> Path:
    return paths.checkpoints_dir(profile) / f"tc_{_check(loss, LOSSES, 'loss')}_{_check(backbone, BACKBONES, 'backbone')}"


def tc_checkpoint(profile: str, round_idx: int, loss: str = "nr", backbone: str = "alexnet") -> Path:
    return tc_dir(profile, loss, backbone) / f"tc_round{int(round_idx)}.pt"   # the name run_progressive writes


def pairs_table(profile: str, round_idx: int, loss: str = "nr", backbone: str = "alexnet") -> Path:
    return tc_dir(profile, loss, backbone) / f"pairs_round{int(round_idx)}.csv"


def supervised_checkpoint(profile: str, loss: str = "bce", backbone: str = "alexnet") -> Path:
    return paths.checkpoints_dir(profile) / f"sup_{_check(loss, LOSSES, 'loss')}_{_check(backbone, BACKBONES, 'backbone')}.pt"


def noise_checkpoint(profile: str, loss: str, noise: int, seed: int) -> Path:
    return paths.checkpoints_dir(profile) / "noise" / f"{_check(loss, LOSSES, 'loss')}_n{int(noise)}_s{int(seed)}.pt"


def results_file(profile: str, notebook: str, name: str, ext: str = "json") -> Path:
    """``results/<profile>/<NN>_<name>.<ext>``; ``notebook`` is the two-digit prefix, e.g. ``"01"``."""
    if not (len(notebook) == 2 and notebook.isdigit()):
        raise ValueError(f"notebook must be a two-digit prefix like '01', got {notebook!r}")
    return paths.results_dir(profile) / f"{notebook}_{name}.{ext}"


def timings_file(profile: str, notebook: str) -> Path:
    return paths.results_dir(profile) / "timings" / f"{notebook}.json"


def tracking_dir(profile: str) -> Path:
    return paths.results_dir(profile) / "tracking"


# The trackers the evaluation notebooks compare, with the checkpoint each comes from.
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
