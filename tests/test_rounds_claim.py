"""The rounds claim of notebook 02: the precision of mined pairs, the controls' paths and schedules."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pulkit.core import artifacts
from pulkit.core.config import load_config
from pulkit.experiments import temporal_correspondence as tc
from pulkit.method.loop import lr_schedule


class _Seq:
    def __init__(self, boxes):
        self.boxes = np.asarray(boxes, dtype=np.float64)


def _table(rows):
    return pd.DataFrame(rows, columns=["video", "frame_b", "xb", "yb", "wb", "hb"])


def test_pair_precision_scores_mined_boxes_against_ground_truth_only_on_labelled_videos():
    labelled = {"a": _Seq([[10, 10, 20, 20]] * 5)}
    table = _table([("a", 1, 10, 10, 20, 20),      # exact: IoU 1
                    ("a", 2, 12, 10, 20, 20),      # IoU 18*20 / (2*400 - 360) = 0.82
                    ("a", 3, 30, 30, 20, 20),      # disjoint
                    ("unlabelled", 1, 0, 0, 5, 5)])  # not scored
    p = tc.pair_precision(table, labelled)
    assert p["n"] == 3 and p["precision"] == pytest.approx(2 / 3)
    assert p["se"] == pytest.approx(np.std([1, 1, 0], ddof=1) / np.sqrt(3))
    assert tc.pair_precision(table, labelled, iou_min=0.9)["precision"] == pytest.approx(1 / 3)
    assert tc.pair_precision(table.iloc[3:], labelled) == {"precision": None, "n": 0}


def test_no_remine_control_has_the_treatments_steps_and_schedule():
    """One round of rounds x steps under ``restart=False`` follows exactly the schedule the rounds share."""
    import torch

    cfg = load_config("cpu")
    steps = cfg.tc.rounds * cfg.tc.steps_per_round
    once = cfg.override({"tc": {"rounds": 1, "steps_per_round": steps}})

    def lrs(c, r):
        opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
        s = lr_schedule(opt, c.tc.schedule, c.tc.lr, c.tc.steps_per_round, c.tc.lr_end, c.tc.warmup,
                        (r - 1) * c.tc.steps_per_round, c.tc.rounds * c.tc.steps_per_round)
        out = []
        for _ in range(c.tc.steps_per_round):
            out.append(opt.param_groups[0]["lr"])
            opt.step()
            s.step()
        return out

    treatment = sum((lrs(cfg, r) for r in range(1, cfg.tc.rounds + 1)), [])
    assert lrs(once, 1) == pytest.approx(treatment)


def test_controls_live_in_one_declared_folder_written_by_02():
    d = artifacts.rounds_controls_dir("smoke")
    assert d.name == "tc_controls"
    for f in ("no_remine.pt", "random_bn_init.pt", "from_random_bn_round1.pt"):
        assert artifacts.producer(d / f, "smoke") == "02_temporal_correspondence"
