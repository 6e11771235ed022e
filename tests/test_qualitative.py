"""Qualitative tracking (Figs. 5, 7): drift detection, frame picking, missing checkpoints, records,
figures from constructed data and from saved files, tracking runs stored and re-used."""
from __future__ import annotations

import numpy as np
import pytest

from pulkit.tracking.siamfc import load_tracker
from pulkit.core import artifacts
from pulkit.core.config import load_config
from pulkit.core.results import MissingResultsError, load_results, save_results
from pulkit.data.sequences import read_got10k
from pulkit.experiments import qualitative as q

THR, N = 0.1, 3


# --------------------------------------------------------------------------- find_drift
@pytest.mark.parametrize("ious, n, expected", [
    ([1, .9, .8, .05, .02, .0, .0], 3, 3),                 # drift from frame 3 on
    ([1, .9, .05, .05, .5, .05, .05, .05], 3, 5),          # a recovery resets the run
    ([1, .9, .8, .05, .05], 3, None),                      # cut short by the end: only 2 low frames
    ([1, .9, .05, .05, .05], 3, 2),                        # exactly n low frames at the very end
    ([1, .05, np.nan, .05, np.nan, .05, .9], 3, 1),        # absent frames neither count nor break
    ([1, .05, np.nan, np.nan, .05], 3, None),              # ... so two labelled low frames are no drift
    ([np.nan, np.nan, .0, .0, .0], 3, 2),                  # leading absent frames
    ([np.nan] * 6, 3, None),                               # nothing labelled
    ([], 3, None),
    ([1, .1, .1, .1, .1], 3, None),                        # IoU == threshold is not below it
    ([.0], 1, 0),
])
def test_find_drift(ious, n, expected):
    assert q.find_drift(ious, THR, n) == expected


def test_find_drift_with_the_configured_rule():
    cfg = load_config("smoke")
    trace = np.r_[np.ones(20), np.full(9, 0.05), [0.5], np.full(10, 0.05)]
    assert q.find_drift(trace, cfg.eval.drift_iou, cfg.eval.drift_frames) == 30
    assert q.find_drift(trace[:39], cfg.eval.drift_iou, cfg.eval.drift_frames) is None


@pytest.mark.parametrize("n", [0, -1, 2.5])
def test_find_drift_rejects_bad_run_lengths(n):
    with pytest.raises(ValueError, match="n_frames"):
        q.find_drift([0.0, 0.0], THR, n)


# --------------------------------------------------------------------------- frames and IoU
def test_pick_frames_is_deterministic_and_skips_the_given_box():
    assert q.pick_frames(30, 4) == [7, 14, 22, 29]
    assert q.pick_frames(3, 4) == [1, 2] and q.pick_frames(1, 4) == [0]
    assert q.pick_frames(100, 1) == [99]
    with pytest.raises(ValueError):
        q.pick_frames(0, 3)


def test_per_frame_iou_marks_absent_targets():
    gt = np.array([[0, 0, 10, 10], [0, 0, 10, 10], [np.nan] * 4, [20, 20, 10, 10]], dtype=float)
    boxes = np.array([[0, 0, 10, 10], [5, 0, 10, 10], [0, 0, 10, 10], [0, 0, 10, 10]], dtype=float)
    out = q.per_frame_iou(boxes, gt)
    np.testing.assert_allclose(out[[0, 1, 3]], [1.0, 50 / 150, 0.0])
    assert np.isnan(out[2])
    with pytest.raises(ValueError, match="N x 4"):
        q.per_frame_iou(boxes[:3], gt)


# --------------------------------------------------------------------------- checkpoints
@pytest.fixture
def roots(tmp_path, monkeypatch):
    monkeypatch.setenv("PULKIT_CHECKPOINTS", str(tmp_path / "checkpoints"))
    monkeypatch.setenv("PULKIT_RESULTS", str(tmp_path / "results"))
    return tmp_path


def fabricate(profile: str, names, rounds: int = 2) -> dict:
    """Untrained nets saved where ``artifacts.tracker_checkpoints`` expects the named trackers.

    Small AlexNets for every name (87 / 127 crops: a 6 x 6 response), so tests stay fast on a
    shared CPU; the backbones themselves are tested in test_tracker.py."""
    import torch

    from pulkit.models.net import build_net, save_checkpoint

    out = {}
    for i, name in enumerate(names):
        path = artifacts.tracker_checkpoints(profile, rounds)[name]
        cfg = load_config(profile, {"model": {"backbone": "alexnet", "exemplar_sz": 87, "instance_sz": 127},
                                    "tracker": {"response_up": 4, "device": "cpu"}}, seed=i)
        torch.manual_seed(i)
        out[name] = save_checkpoint(path, build_net(cfg.model), cfg, stage="test")
    return out


@pytest.mark.parametrize("name, notebook", [("ResPUL", "03_training"), ("AlexPUL", "02_temporal_correspondence"),
                                            ("BD only (RSS)", "01_background_discrimination"),
                                            ("TC-BCE round 2", "03_training"), ("SiamDW (supervised)", "03_training")])
def test_a_missing_checkpoint_names_its_notebook(roots, name, notebook):
    with pytest.raises(MissingResultsError, match=f"notebooks/{notebook}.ipynb") as e:
        q.require_checkpoints("smoke", [name], rounds=2)
    assert e.value.notebook == notebook and name in str(e.value) and f"--only {notebook[:2]}" in str(e.value)


def test_require_checkpoints_finds_present_ones_and_rejects_unknown_names(roots):
    made = fabricate("smoke", ["AlexPUL"])
    assert q.require_checkpoints("smoke", ["AlexPUL"], rounds=2) == made
    with pytest.raises(MissingResultsError, match="03_training"):
        q.require_checkpoints("smoke", ["AlexPUL", "ResPUL"], rounds=2)
    with pytest.raises(ValueError, match="unknown tracker"):
        q.require_checkpoints("smoke", ["AlexNet-9000"], rounds=2)
    with pytest.raises(ValueError, match="unknown tracker"):
        artifacts.tracker_producer("AlexNet-9000", "smoke", 2)


# --------------------------------------------------------------------------- records and figures
@pytest.fixture(scope="module")
def seqs(synthetic_split):
    return [s.limit(6) for s in read_got10k(synthetic_split, subset="val")[:2]]


def constructed_tracks(seqs, drift_at=None):
    """Tracks on ``seqs``: 'Good' follows the ground truth, 'Bad' leaves it from ``drift_at`` on
    (never when None) in the first sequence."""
    tracks = {}
    for k, s in enumerate(seqs):
        good = s.boxes.copy()
        bad = s.boxes.copy()
        if drift_at is not None and k == 0:
            bad[drift_at:, 0] += 1000.0
        tracks[s.name] = {name: q.Track(name, s.name, b, q.per_frame_iou(b, s.boxes), f"{name}-key")
                          for name, b in (("Good", good), ("Bad", bad))}
    return tracks


def test_fig7_record_finds_the_drift_frame(seqs, tmp_path):
    tracks = constructed_tracks(seqs, drift_at=3)
    rec = q.fig7_record(seqs, tracks, THR, N, max_panels=5, frames_dir=tmp_path)
    assert rec["drift"] and rec["note"] is None and rec["left_out"] == 0
    (panel,) = rec["panels"]
    assert panel["sequence"] == seqs[0].name and panel["frame"] == 3 and panel["drifting"] == ["Bad"]
    assert set(panel["boxes"]) == {"Good", "Bad"} and (tmp_path / panel["image"]).is_file()
    summary = q.drift_summary(tracks, THR, N)
    assert summary[seqs[0].name]["Bad"]["drift_frame"] == 3 and summary[seqs[0].name]["Good"]["drift_frame"] is None
    assert summary[seqs[0].name]["Good"]["mean_iou"] == pytest.approx(1.0)


def test_fig7_record_without_drift_says_so(seqs):
    rec = q.fig7_record(seqs, constructed_tracks(seqs), THR, N, max_panels=5)
    assert not rec["drift"] and "no tracker drifts" in rec["note"]
    assert [p["lowest_iou"] for p in rec["panels"]] == [["Good"], ["Bad"]]
    assert all(p["frame"] >= 1 for p in rec["panels"])


def test_figures_build_from_constructed_data(seqs, tmp_path):
    from matplotlib.figure import Figure

    from pulkit.figures.qualitative import fig5_qualitative, fig7_failures, tracker_color
    from pulkit.figures.style import TRACKER_COLORS

    tracks = constructed_tracks(seqs, drift_at=3)
    rec5 = q.fig5_record(seqs, tracks, n_frames=3, max_sequences=1, frames_dir=tmp_path)
    assert len(rec5["rows"]) == 1 and [p["frame"] for p in rec5["rows"][0]["panels"]] == q.pick_frames(6, 3)
    images = {p["image"]: seqs[0].image(p["frame"]) for p in rec5["rows"][0]["panels"]}
    fig = fig5_qualitative(rec5, images)
    assert isinstance(fig, Figure) and sum(ax.has_data() for ax in fig.axes) == 3
    rec7 = q.fig7_record(seqs, tracks, THR, N, max_panels=5, frames_dir=tmp_path)
    fig7 = fig7_failures(rec7, {rec7["panels"][0]["image"]: seqs[0].image(3)})
    texts = [t.get_text() for ax in fig7.axes for t in ax.texts]
    assert "Bad drifts at frame 4" in texts       # index 3 is the 4th frame
    calm = q.fig7_record(seqs, constructed_tracks(seqs), THR, N, max_panels=5, frames_dir=tmp_path)
    fig_calm = fig7_failures(calm, {p["image"]: seqs[0].image(0) for p in calm["panels"]})
    assert "no tracker drifts" in fig_calm._supxlabel.get_text()
    assert any(t.get_text().startswith("Good lowest IoU") for ax in fig_calm.axes for t in ax.texts)
    assert tracker_color("SiamFC (supervised)") == TRACKER_COLORS["SiamFC"]
    with pytest.raises(KeyError, match="no image"):
        fig5_qualitative(rec5, {})


# --------------------------------------------------------------------------- end to end with checkpoints
def test_track_save_and_rebuild_figures_from_files(roots, seqs, monkeypatch):
    seqs = [s.limit(4) for s in seqs]
    from matplotlib.figure import Figure

    from pulkit.core import paths
    from pulkit.figures.qualitative import fig5_qualitative_from_results, fig7_failures_from_results
    from pulkit.figures.registry import FIGURES

    profile = "smoke"
    with pytest.raises(MissingResultsError, match="06_qualitative"):
        fig5_qualitative_from_results(profile)
    made = fabricate(profile, q.FIG5_TRACKERS)
    ckpts = q.require_checkpoints(profile, q.FIG5_TRACKERS, rounds=2)
    assert ckpts == made
    trackers = {n: load_tracker(n, p, device="cpu") for n, p in ckpts.items()}
    tracks = q.track_all(trackers, seqs, profile=profile, progress=False)
    t = tracks[seqs[0].name]["ResPUL"]
    assert t.boxes.shape == (len(seqs[0]), 4) and np.isfinite(t.boxes).all() and t.result_key.startswith("ResPUL-w")
    assert (artifacts.tracking_dir(profile) / t.result_key / "OTB" / f"{seqs[0].name}.txt").is_file()

    # a second run re-uses the stored boxes: the trackers are never asked again
    for tr in trackers.values():
        monkeypatch.setattr(tr, "update", lambda image: pytest.fail("tracked again"))
    again = q.track_all(trackers, seqs, profile=profile, progress=False)
    np.testing.assert_array_equal(again[seqs[0].name]["ResPUL"].boxes, t.boxes)

    stale = artifacts.frames_dir(profile) / "old_000001.jpg"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"stale")
    frames_dir = q.clear_frames(profile)
    assert frames_dir == paths.results_dir(profile) / "06_qualitative" / "frames" and not stale.exists()
    record = {"fig5": q.fig5_record(seqs, tracks, 2, 2, frames_dir),
              "fig7": q.fig7_record(seqs, tracks, THR, N, 4, frames_dir),
              "tracks": q.drift_summary(tracks, THR, N)}
    save_results(profile, "06_qualitative", record)
    back = load_results(profile, "06_qualitative")
    assert back["fig5"]["trackers"] == list(q.FIG5_TRACKERS)
    for make in (fig5_qualitative_from_results, fig7_failures_from_results, FIGURES["fig5_qualitative"], FIGURES["fig7_failures"]):
        assert isinstance(make(profile), Figure)
    (frames_dir / back["fig5"]["rows"][0]["panels"][0]["image"]).unlink()
    with pytest.raises(MissingResultsError, match="06_qualitative"):
        fig5_qualitative_from_results(profile)


def test_track_responses_feed_the_sequence_scrubber(roots, seqs):
    from pulkit.figures.widgets import sequence_scrubber

    seq = seqs[0].limit(3)
    path = fabricate("smoke", ["AlexPUL"])["AlexPUL"]
    boxes, responses = q.track_responses(load_tracker("AlexPUL", path, device="cpu"), seq, progress=False)
    assert boxes.shape == (3, 4) and responses[0] is None
    assert all(r.ndim == 2 and r.shape[0] == r.shape[1] for r in responses[1:])
    box = sequence_scrubber(seq, {"AlexPUL": boxes}, responses)
    box.controls["frame"].value = 2
    from matplotlib.colors import to_rgba

    from pulkit.figures.style import TRACKER_COLORS, TRUE_GT

    ax_frame, ax_resp = box.figure.axes
    assert "#2" in ax_frame.get_title()
    rects = {p.get_label(): p for p in ax_frame.patches}
    assert set(rects) == {"ground truth", "AlexPUL"}
    for label, drawn, colour in (("AlexPUL", boxes[2], TRACKER_COLORS["AlexPUL"]),
                                 ("ground truth", np.asarray(seq.boxes)[2], TRUE_GT)):
        r = rects[label]     # frame 2's box, pixel edges half a pixel outside the centres, in its colour
        assert r.get_xy() == pytest.approx((drawn[0] - 0.5, drawn[1] - 0.5))
        assert (r.get_width(), r.get_height()) == pytest.approx((drawn[2], drawn[3]))
        assert r.get_edgecolor() == pytest.approx(to_rgba(colour)) and not r.get_fill()
    np.testing.assert_allclose(ax_resp.images[0].get_array(), 1 / (1 + np.exp(-np.asarray(responses[2], float))))


def test_the_papers_vot_sequences_are_used_when_present(tmp_path, make_vot, monkeypatch):
    root = tmp_path / "vot2016"
    for name in ("Basketball", "graduate", "other"):
        make_vot(root, name, [[5, 5, 20, 15]] * 4)
    cfg = load_config("smoke", {"data": {"max_frames": 3}})
    seqs, source = q.qualitative_sequences(cfg, "fig5", vot_root=root)
    assert [s.name for s in seqs] == ["Basketball"] and len(seqs[0]) == 3 and "paper" in source
    monkeypatch.setenv("PULKIT_VOT", str(root))
    seqs, _ = q.qualitative_sequences(cfg, "fig7")
    assert [s.name for s in seqs] == ["graduate"] and seqs[0].attributes["source"] == "vot"
    assert q.vot_sequences(["fish1"], root) == [] and q.vot_sequences(["fish1"], tmp_path / "none") == []
    with pytest.raises(ValueError, match="fig5"):
        q.qualitative_sequences(cfg, "fig6")
