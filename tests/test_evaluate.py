"""OTB, GOT-10k and VOT protocols: known answers, agreement with got10k, stored results, keys."""
from __future__ import annotations

import contextlib
import io
from pathlib import Path

import cv2
import matplotlib
import numpy as np
import pytest
import torch
from got10k.experiments import ExperimentGOT10k
from got10k.trackers import Tracker

from pulkit.core import paths
from pulkit.core.config import EvalConfig
from pulkit.data.sequences import DataError, load_shared, read_otb, read_vot
from pulkit.evaluation import got10k_compat as compat
from pulkit import evaluation as ev
from pulkit.figures import benchmarks as figs_bench


# --------------------------------------------------------------------------- test trackers
class Oracle(Tracker):
    """Returns the ground truth (polygons where the sequence has them): finds the initial frame
    by its box, then counts frames."""

    def __init__(self, seqs, name="Oracle"):
        super().__init__(name, is_deterministic=True)
        self.seqs = list(seqs)

    def init(self, image, box):
        for s in self.seqs:
            d = np.abs(s.boxes - np.asarray(box, dtype=np.float64)).sum(axis=1)
            if np.nanmin(d) < 1e-9:
                self.gt = s.polygons if s.polygons is not None else s.boxes
                self.f = int(np.nanargmin(d))
                return
        raise AssertionError(f"oracle: no sequence starts at {box}")

    def update(self, image):
        self.f += 1
        return self.gt[self.f]


class Static(Tracker):
    """Returns the initial box forever; counts its calls."""

    def __init__(self, name="Static"):
        super().__init__(name, is_deterministic=True)
        self.calls = 0

    def init(self, image, box):
        self.box = np.asarray(box, dtype=np.float64).copy()
        self.calls += 1

    def update(self, image):
        self.calls += 1
        return self.box


class Scripted(Tracker):
    """Reads the frame index from a uniform grey frame (level 10 + 5 f) and returns the initial box
    shifted right by ``shift[f]`` pixels (0 when not listed)."""

    def __init__(self, shift):
        super().__init__("Scripted", is_deterministic=True)
        self.shift = dict(shift)

    def init(self, image, box):
        self.box = np.asarray(box, dtype=np.float64).copy()

    def update(self, image):
        f = int(round((np.asarray(image, dtype=np.float64).mean() - 10) / 5))
        return self.box + [self.shift.get(f, 0.0), 0, 0, 0]


@pytest.fixture(scope="module")
def otb_seqs():
    return read_otb(paths.shared_sequences() / "otb")


@pytest.fixture(scope="module")
def vot_seqs():
    return read_vot(paths.shared_sequences() / "vot", names=["bag", "ball1"])


# --------------------------------------------------------------------------- result keys
def test_result_key_changes_with_checkpoint_bytes_and_config(tmp_path):
    a, b = tmp_path / "a.pt", tmp_path / "b.pt"
    a.write_bytes(b"weights-1")
    b.write_bytes(b"weights-2")
    cfg = EvalConfig()
    k = ev.result_key("AlexPUL", a, cfg)
    assert k == ev.result_key("AlexPUL", a, EvalConfig())
    assert k != ev.result_key("AlexPUL", b, cfg)
    assert k != ev.result_key("AlexPUL", a, EvalConfig(vot_burnin=5))
    assert k != ev.result_key("ResPUL", a, cfg)
    assert ev.result_key("Static") == "Static-wnone-cnone"
    assert "/" not in ev.result_key("SiamFC (supervised) / r1", a)
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        ev.result_key("x", tmp_path / "missing.pt")


def test_result_key_from_a_network_state():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    k1 = ev.result_key("n", net)
    assert k1 == ev.result_key("n", net.state_dict())
    with torch.no_grad():
        net[0].weight[0, 0, 0, 0] += 1e-3
    assert ev.result_key("n", net) != k1

    class WithNet(Static):
        pass

    t = WithNet("WithNet")
    t.net, t.cfg = net, EvalConfig()
    assert ev.tracker_key(t) == ev.result_key("WithNet", net, {"cfg": EvalConfig()})


# --------------------------------------------------------------------------- OTB
def test_otb_oracle_scores_20_of_21_and_precision_1(otb_seqs):
    r = ev.evaluate_otb(Oracle(otb_seqs), otb_seqs, max_frames=25, progress=False)
    assert r["success_auc"] == pytest.approx(20 / 21, abs=1e-12)
    assert r["precision"] == 1.0 and r["success_rate"] == 1.0
    assert r["curves"]["success"][-1] == 0.0  # strict IoU > 1 never holds
    assert set(r["sequences"]) == {"Crossing", "Deer", "Skating1"}
    assert all(s["frames"] == 25 for s in r["sequences"].values())


def test_otb_static_tracker_matches_got10k_experiment_otb(tmp_path, otb_seqs):
    """got10k's ExperimentOTB run for real on the shared OTB root (no download) gives the same numbers."""
    exp = compat.ExperimentOTBLocal(paths.shared_sequences() / "otb", 2015,
                                    result_dir=str(tmp_path / "r"), report_dir=str(tmp_path / "p"))
    with contextlib.redirect_stdout(io.StringIO()), matplotlib.rc_context():
        exp.run(Static())
        perf = exp.report(["Static"])["Static"]
    ours = ev.evaluate_otb(Static(), otb_seqs, frame_format="pil", result_dir=tmp_path / "ours", key="k", progress=False)
    exp.result_dir = str(tmp_path / "ours")  # got10k reads our stored results as a tracker named "OTB"
    with contextlib.redirect_stdout(io.StringIO()), matplotlib.rc_context():
        again = exp.report(["OTB"])["OTB"]
    assert again["overall"]["success_score"] == pytest.approx(perf["overall"]["success_score"], abs=1e-12)
    assert ours["success_auc"] == pytest.approx(perf["overall"]["success_score"], abs=1e-12)
    assert ours["precision"] == pytest.approx(perf["overall"]["precision_score"], abs=1e-12)
    assert ours["success_rate"] == pytest.approx(perf["overall"]["success_rate"], abs=1e-12)
    np.testing.assert_allclose(ours["curves"]["success"], perf["overall"]["success_curve"], atol=1e-12)
    np.testing.assert_allclose(ours["curves"]["precision"], perf["overall"]["precision_curve"], atol=1e-12)
    for name, s in perf["seq_wise"].items():
        assert ours["sequences"][name]["success_auc"] == pytest.approx(s["success_score"], abs=1e-12)
        assert ours["sequences"][name]["precision"] == pytest.approx(s["precision_score"], abs=1e-12)
    assert 0.0 < ours["success_auc"] < 0.5  # a static box is a poor tracker, not a degenerate case


def test_otb_results_stored_and_reused_per_key(tmp_path, otb_seqs):
    seqs = [s.sub(0, 12) for s in otb_seqs[:2]]
    t = Static()
    r1 = ev.evaluate_otb(t, seqs, result_dir=tmp_path, key="k1", progress=False)
    calls = t.calls
    assert calls == 24
    record = tmp_path / "OTB" / "Crossing.txt"
    assert record.is_file() and (tmp_path / "OTB" / "times" / "Crossing_time.txt").is_file()
    assert np.loadtxt(record, delimiter=",").shape == (12, 4)
    r2 = ev.evaluate_otb(t, seqs, result_dir=tmp_path, key="k1", progress=False)
    assert t.calls == calls  # re-used
    assert r2["success_auc"] == r1["success_auc"] and r2["sequences"] == {
        k: {**v, "speed_fps": r2["sequences"][k]["speed_fps"]} for k, v in r1["sequences"].items()}
    # the record is in OTB's 1-based convention: got10k's metrics against the raw annotation agree
    anno = np.loadtxt(paths.shared_sequences() / "otb" / "Crossing" / "groundtruth_rect.txt", delimiter=",")[:12]
    stored = np.loadtxt(record, delimiter=",")
    np.testing.assert_allclose(stored[0], anno[0])
    exp = compat.ExperimentOTBLocal(None)
    ious, errors = exp._calc_metrics(stored, anno)
    assert np.mean(exp._calc_curves(ious, errors)[0]) == pytest.approx(r1["sequences"]["Crossing"]["success_auc"])
    ev.evaluate_otb(t, seqs, result_dir=tmp_path, key="k2", progress=False)
    assert t.calls == 2 * calls  # another key: tracked again
    ev.evaluate_otb(t, [s.sub(0, 10) for s in seqs], result_dir=tmp_path, key="k2", progress=False)
    assert t.calls == 2 * calls + 20  # another sequence (fewer frames): tracked again


def test_results_go_under_the_profile_tracking_dir(tmp_path, monkeypatch, otb_seqs):
    monkeypatch.setenv("PULKIT_RESULTS", str(tmp_path))
    ev.evaluate_otb(Static(), [otb_seqs[1].sub(0, 5)], profile="smoke", key="abc", progress=False)
    assert (tmp_path / "smoke" / "tracking" / "abc" / "OTB" / "Deer.txt").is_file()
    ev.evaluate_otb(Static(), [otb_seqs[1].sub(0, 5)], progress=False)  # neither: nothing written
    assert sorted(p.name for p in (tmp_path / "smoke" / "tracking").iterdir()) == ["abc"]
    shared = load_shared(["vot/bag"])[0].sub(0, 4)  # named "vot/bag"
    ev.evaluate_vot(Static(), [shared], profile="smoke", key="abc", progress=False)
    assert (tmp_path / "smoke" / "tracking" / "abc" / "VOT" / "baseline" / "vot_bag" / "vot_bag_001.txt").is_file()


def test_bad_inputs_fail_clearly(otb_seqs):
    class Bad(Static):
        def update(self, image):
            return [1.0, 2.0, 3.0]

    seq = otb_seqs[0].sub(0, 3)
    with pytest.raises(ValueError, match=r"Crossing frame 1 returned 3 values"):
        ev.run_sequence(Bad("Bad"), seq)
    seq.boxes = seq.boxes.copy()
    seq.boxes[0] = np.nan
    with pytest.raises(DataError, match="first-frame box"):
        ev.run_sequence(Static(), seq)
    with pytest.raises(ValueError, match="frame_format"):
        ev.run_sequence(Static(), otb_seqs[0].sub(0, 2), frame_format="bgr")
    with pytest.raises(DataError, match="no sequence named Nope"):
        ev.evaluate_otb(Static(), otb_seqs, names=["Nope"], progress=False)


# --------------------------------------------------------------------------- GOT-10k
def _got10k_val(root: Path, with_cut: bool) -> Path:
    """Two GOT-10k val sequences of 64 x 48 frames, moving boxes (one leaving the frame) and
    covers with hidden frames."""
    split = root / "val"
    split.mkdir(parents=True)
    names = ["GOT-10k_Val_000001", "GOT-10k_Val_000002"]
    (split / "list.txt").write_text("\n".join(names) + "\n")
    rng = np.random.default_rng(0)
    specs = {names[0]: ([[10, 8, 20, 16], [13, 9, 20, 16], [16, 10, 21, 17], [20, 10, 22, 18], [24, 12, 22, 18]],
                        [8, 8, 0, 6, 8]),
             names[1]: ([[30, 20, 12, 10], [36, 20, 12, 10], [44, 22, 12, 10], [52, 22, 14, 10], [58, 22, 14, 10],
                         [40, 30, 10, 8]],
                        [8, 7, 8, 8, 3, 0])}
    for name, (boxes, cover) in specs.items():
        seq = split / name
        seq.mkdir()
        for f in range(len(boxes)):
            cv2.imwrite(str(seq / f"{f + 1:08d}.jpg"), rng.integers(0, 255, (48, 64, 3), dtype=np.uint8))
        (seq / "groundtruth.txt").write_text("".join("%.4f,%.4f,%.4f,%.4f\n" % tuple(b) for b in boxes))
        (seq / "cover.label").write_text("".join(f"{c}\n" for c in cover))
        (seq / "absence.label").write_text("".join(f"{int(c == 0)}\n" for c in cover))
        if with_cut:
            (seq / "cut_by_image.label").write_text("".join(f"{int(b[0] + b[2] > 64)}\n" for b in boxes))
        (seq / "meta_info.ini").write_text("[METAINFO]\nobject_class: box\nresolution: (64, 48)\n")
    return root


def _got10k_oracle(root: Path) -> Oracle:
    ds = compat.GOT10kLocal(root, "val")
    from pulkit.data.sequences import Sequence

    return Oracle([Sequence(n, [], np.loadtxt(Path(d) / "groundtruth.txt", delimiter=","))
                   for n, d in zip(ds.seq_names, ds.seq_dirs)])


def test_got10k_oracle_scores_ao_and_sr_1(tmp_path):
    root = _got10k_val(tmp_path / "got10k", with_cut=False)  # no cut_by_image.label: got10k's own would crash
    r = ev.evaluate_got10k(_got10k_oracle(root), root, progress=False)
    assert r["ao"] == pytest.approx(1.0, abs=1e-9)
    assert r["sr50"] == 1.0 and r["sr75"] == 1.0
    assert r["sequences"]["GOT-10k_Val_000001"]["scored_frames"] == 3  # first frame and cover 0 left out
    assert r["sequences"]["GOT-10k_Val_000002"]["scored_frames"] == 4
    bare = ev.evaluate_got10k(_got10k_oracle(root), root / "val", progress=False)  # a bare split folder
    assert bare["ao"] == r["ao"]


def test_got10k_on_a_synthetic_split(tmp_path):
    from pulkit.data.sequences import read_got10k
    from pulkit.data.synthetic import generate_split

    split = generate_split(tmp_path / "val", n_videos=2, n_frames=8, width=64, height=48, seed=2000)
    r = ev.evaluate_got10k(Oracle(read_got10k(split, "val")), split, progress=False)
    assert r["ao"] == pytest.approx(1.0, abs=1e-9) and r["sr75"] == 1.0
    assert r["frames"] == 14


def test_got10k_static_tracker_matches_got10k_experiment(tmp_path):
    root = _got10k_val(tmp_path / "got10k", with_cut=True)
    with contextlib.redirect_stdout(io.StringIO()), matplotlib.rc_context():
        exp = ExperimentGOT10k(str(root), subset="val", result_dir=str(tmp_path / "r"), report_dir=str(tmp_path / "p"))
        exp.run(Static())
        perf = exp.report(["Static"])["Static"]
    ours = ev.evaluate_got10k(Static(), root, result_dir=tmp_path / "ours", key="k", progress=False)
    assert ours["ao"] == pytest.approx(perf["overall"]["ao"], abs=1e-12)
    assert ours["sr50"] == pytest.approx(perf["overall"]["sr"], abs=1e-12)
    assert ours["sr75"] == pytest.approx(perf["overall"]["succ_curve"][75], abs=1e-12)
    for name, s in perf["seq_wise"].items():
        assert ours["sequences"][name]["ao"] == pytest.approx(s["ao"], abs=1e-12)
        assert ours["sequences"][name]["sr50"] == pytest.approx(s["sr"], abs=1e-12)
    assert 0.1 < ours["ao"] < 0.9 and ours["sr75"] < ours["sr50"]
    rec = tmp_path / "ours" / "GOT-10k" / "GOT-10k_Val_000002" / "GOT-10k_Val_000002_001.txt"
    np.testing.assert_allclose(np.loadtxt(rec, delimiter=","),
                               np.loadtxt(tmp_path / "r" / "GOT-10k" / "Static" / rec.parent.name / rec.name, delimiter=","))
    with pytest.raises(ValueError, match="only 'val'"):
        ev.evaluate_got10k(Static(), root, subset="test", progress=False)


# --------------------------------------------------------------------------- VOT
def test_vot_oracle_accuracy_1_no_failures(vot_seqs):
    r = ev.evaluate_vot(Oracle(vot_seqs), vot_seqs, progress=False)
    assert r["accuracy"] == pytest.approx(1.0, abs=1e-9)
    assert r["failures"] == 0 and r["robustness"] == 0
    assert r["eao"] == pytest.approx(1.0, abs=1e-9)
    assert r["eao_interval"] == [108, 371] and r["eao_interval_used"] == [108, 195]  # bag has 196 frames
    for s in r["sequences"].values():
        assert s["failure_frames"] == [] and s["init_frames"] == [0]


def _grey_vot(root: Path, n: int = 50) -> Path:
    """One VOT sequence: frame f uniform grey 10 + 5 f, 120 x 80; a static 1-based rectangle
    (31, 21, 40, 30), i.e. pulkit box [30, 20, 40, 30]."""
    seq = root / "grey"
    seq.mkdir(parents=True)
    for f in range(n):
        cv2.imwrite(str(seq / f"{f + 1:08d}.jpg"), np.full((80, 120, 3), 10 + 5 * f, np.uint8))
    (seq / "groundtruth.txt").write_text("31,21,40,30\n" * n)
    (root / "list.txt").write_text("grey\n")
    return root


# Failure (shift 100 px: overlap 0) at frames 15 and 33; overlap 0.6 (shift 10 px) at 9, 10, 25, 30, 48.
SHIFTS = {15: 100.0, 33: 100.0, 9: 10.0, 10: 10.0, 25: 10.0, 30: 10.0, 48: 10.0}


def test_vot_constructed_case_reinit_burnin_robustness_eao(tmp_path):
    root = _grey_vot(tmp_path / "vot")
    cfg = EvalConfig(vot_eao_interval=(3, 14))
    r = ev.evaluate_vot(Scripted(SHIFTS), root, cfg=cfg, result_dir=tmp_path / "res", key="k", progress=False)
    s = r["sequences"]["grey"]
    # re-initialisation 5 frames after each failure
    assert s["failure_frames"] == [15, 33] and s["init_frames"] == [0, 20, 38]
    traj = (tmp_path / "res" / "VOT" / "baseline" / "grey" / "grey_001.txt").read_text().split()
    assert traj[15] == "2" and traj[16:20] == ["0"] * 4 and traj[20] == "1" and traj[38] == "1"
    # burn-in: frames 0-9, 20-29, 38-47 left out; scored: 10-14 (10 at 0.6), 30-32 (30 at 0.6), 48-49 (48 at 0.6)
    assert s["accuracy"] == pytest.approx((10 - 3 * 0.4) / 10)
    assert r["accuracy"] == s["accuracy"]
    assert r["failures"] == 2 and r["robustness"] == 2
    # EAO by hand: fragments A = frames 0..14 (failed), B = 20..32 (failed), C = 38..49 (reached the end,
    # 12 frames); position k counts frames after the initialisation frame
    A = lambda N: (N - 0.4 * (N >= 9) - 0.4 * (N >= 10)) / N                     # noqa: E731
    B = lambda N: (min(N, 12) - 0.4 * (N >= 5) - 0.4 * (N >= 10)) / N            # noqa: E731
    C = lambda N: (N - 0.4 * (N >= 10)) / N                                      # noqa: E731
    phi = {N: (A(N) + B(N) + (C(N) if N < 12 else 0)) / (2 + (N < 12)) for N in range(1, 15)}
    assert phi[5] == pytest.approx((1 + 4.6 / 5 + 1) / 3)
    assert phi[12] == pytest.approx(11.2 / 12) and phi[14] == pytest.approx(24.4 / 28)
    np.testing.assert_allclose(r["eao_curve"][1:], [phi[N] for N in range(1, 15)], atol=1e-12)
    assert r["eao"] == pytest.approx(np.mean([phi[N] for N in range(3, 15)]), abs=1e-12)
    default = ev.evaluate_vot(Scripted(SHIFTS), root, result_dir=tmp_path / "res", key="k", progress=False)
    assert np.isnan(default["eao"])  # [108, 371] lies beyond this 50-frame sequence
    assert default["accuracy"] == r["accuracy"]


def test_vot_constructed_case_matches_got10k_experiment_vot(tmp_path):
    root = _grey_vot(tmp_path / "vot")
    ours = ev.evaluate_vot(Scripted(SHIFTS), root, frame_format="pil", result_dir=tmp_path / "ours", key="k",
                           progress=False)
    with contextlib.redirect_stdout(io.StringIO()):
        exp = compat.ExperimentVOTLocal(root, 2016, experiments="supervised",
                                        result_dir=str(tmp_path / "r"), report_dir=str(tmp_path / "p"))
        exp.run(Scripted(SHIFTS))
        perf = exp.report(["Scripted"])["Scripted"]
    assert perf["robustness"] == ours["failures"] == 2
    assert perf["accuracy"] == pytest.approx(ours["accuracy"], abs=1e-12)
    theirs = (tmp_path / "r" / "VOT2016" / "Scripted" / "baseline" / "grey" / "grey_001.txt").read_text().split()
    assert [i for i, v in enumerate(theirs) if v == "1"] == ours["sequences"]["grey"]["init_frames"]
    mine = (tmp_path / "ours" / "VOT" / "baseline" / "grey" / "grey_001.txt").read_text().split()
    assert mine == theirs  # the same record, in VOT's 1-based file convention


def test_vot_stored_trajectories_are_reused(tmp_path):
    root = _grey_vot(tmp_path / "vot", n=20)

    class Counting(Scripted):
        calls = 0

        def update(self, image):
            Counting.calls += 1
            return super().update(image)

    r1 = ev.evaluate_vot(Counting({7: 100.0}), root, result_dir=tmp_path, key="k", progress=False)
    n = Counting.calls
    r2 = ev.evaluate_vot(Counting({7: 100.0}), root, result_dir=tmp_path, key="k", progress=False)
    assert Counting.calls == n and r2["accuracy"] == r1["accuracy"] and r2["eao_curve"] == r1["eao_curve"]
    ev.evaluate_vot(Counting({7: 100.0}), root, result_dir=tmp_path, key="other", progress=False)
    assert Counting.calls == 2 * n


def test_vot_polygon_overlap_with_self_intersecting_ground_truth():
    bowtie = np.array([0, 0, 2, 2, 2, 0, 0, 2], dtype=np.float64)
    assert ev.region_overlap([0, 0, 2, 2], bowtie) == pytest.approx(0.5)
    assert ev.region_overlap([0, 0, 2, 2], bowtie, bound=(1, 2)) == pytest.approx(0.5)
    # lobes: (0,0)-(1,1)-(0,2) and (2,0)-(1,1)-(2,2), area 1 each.  [0,1]^2 holds the left lobe's part
    # under y = 1 (area 1/2): IoU 0.5 / (2 + 1 - 0.5); [1,2]x[0,2] holds the right lobe: 1 / (2 + 2 - 1)
    assert ev.region_overlap([0, 0, 1, 1], bowtie) == pytest.approx(0.5 / 2.5)
    assert ev.region_overlap([1, 0, 1, 2], bowtie) == pytest.approx(1 / 3)
    assert ev.region_overlap(bowtie, [0, 0, 1, 1]) == pytest.approx(0.2)      # symmetric


def test_eao_pieces_directly():
    I, F, S = np.array([1.0]), np.array([2.0]), np.array([0.0])
    box = np.array([0.0, 0, 1, 1])
    traj = [I, box, box, F, S, I, box, box]
    ov = np.array([np.nan, 1.0, 0.5, np.nan, np.nan, np.nan, 1.0, 1.0])
    frags = ev.eao_fragments(traj, ov)
    assert [(len(o), failed) for o, failed in frags] == [(3, True), (3, False)]
    curve = ev.eao_curve(frags)
    # N=1: (1 + 1)/2; N=2: (0.75 + 1)/2; the second fragment lasts 3 frames, so N < 3 only
    np.testing.assert_allclose(curve, [0.0, 1.0, 0.875])
    assert ev.vot_accuracy(traj, ov, burnin=2) == (pytest.approx(0.75), 2)  # frames 2 (0.5) and 7 (1.0)
    assert ev.vot_accuracy(traj, ov, burnin=10) == (0.0, 0)
    assert ev.eao_score(curve, (1, 2)) == pytest.approx(0.9375)
    assert np.isnan(ev.eao_score(curve, (5, 9)))
    with pytest.raises(ValueError, match="interval"):
        ev.eao_score(curve, (4, 2))


# --------------------------------------------------------------------------- tables and plots
def test_tables_and_plots(otb_seqs, tmp_path):
    seqs = [s.sub(0, 10) for s in otb_seqs]
    r = ev.evaluate_otb(Static(), seqs, progress=False)
    o = ev.evaluate_otb(Oracle(otb_seqs), seqs, progress=False)
    df = ev.to_table(r)
    assert list(df.index) == ["Crossing", "Deer", "Skating1", "overall"]
    assert df.loc["overall", "success_auc"] == r["success_auc"]
    fig = figs_bench.plot_success({"static": r, "oracle": o})
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert labels[0].startswith("oracle [0.952]") and len(fig.axes[0].lines) == 2
    fig = figs_bench.plot_precision([r, o])
    assert len(fig.axes[0].lines) == 2
    assert not list(tmp_path.iterdir())  # nothing written
    vot = ev.evaluate_vot(Static(), _grey_vot(tmp_path / "v", n=12), progress=False)
    assert list(ev.to_table(vot).columns) == ["accuracy", "robustness", "failures", "eao", "speed_fps", "frames"]
    assert len(figs_bench.plot_eao_curve(vot).axes[0].lines) == 1
    with pytest.raises(ValueError, match="precision plots need OTB"):
        figs_bench.plot_precision(vot)


# --------------------------------------------------------------------------- VOT: pooling over sequences
class ScriptedPerSequence(Scripted):
    """``Scripted`` with one script per sequence, told apart by the initial box's width."""

    def __init__(self, scripts):
        super().__init__({})
        self.scripts = scripts

    def init(self, image, box):
        super().init(image, box)
        self.shift = self.scripts[float(box[2])]


def test_vot_pools_eao_fragments_and_length_weights_accuracy_over_sequences(tmp_path):
    from pulkit.data.sequences import Sequence

    # three grey sequences (frame f uniform 10 + 5 f, 120 x 80), static boxes of different widths
    specs = {"a": (12, [30, 20, 40, 30], {4: 100.0, 9: 10.0}),    # fails at 4; 0.6 at 9 (10 px of 40)
             "b": (8, [10, 10, 20, 20], {3: 5.0, 6: 5.0}),       # never fails; 0.6 at 3 and 6 (5 px of 20)
             "c": (7, [50, 40, 30, 20], {2: 100.0, 6: 10.0})}    # fails at 2; 0.5 at 6 (10 px of 30)
    seqs = []
    for name, (n, box, _) in specs.items():
        (tmp_path / name).mkdir()
        frames = [tmp_path / name / f"{f:04d}.png" for f in range(n)]
        for f, p in enumerate(frames):
            cv2.imwrite(str(p), np.full((80, 120, 3), 10 + 5 * f, np.uint8))
        seqs.append(Sequence(name, frames, boxes=np.tile(np.asarray(box, dtype=np.float64), (n, 1))))
    tracker = ScriptedPerSequence({float(box[2]): shifts for _, box, shifts in specs.values()})
    cfg = EvalConfig(vot_burnin=2, vot_skip_after_failure=2, vot_eao_interval=(1, 5))
    r = ev.evaluate_vot(tracker, seqs, cfg=cfg, progress=False)

    # by hand.  a: init 0, fail 4, skip 5, init 6; burn-in leaves out 0-1 and 6-7: scored 2, 3, 8, 9 (0.6), 10, 11
    # b: init 0; scored 2..7 with 0.6 at 3 and 6.  c: init 0, fail 2, skip 3, init 4; scored only 6 (0.5)
    s = r["sequences"]
    assert [s[k]["init_frames"] for k in "abc"] == [[0, 6], [0], [0, 4]]
    assert [s[k]["failure_frames"] for k in "abc"] == [[4], [], [2]]
    acc = {"a": 5.6 / 6, "b": 5.2 / 6, "c": 0.5}
    for k in "abc":
        assert s[k]["accuracy"] == pytest.approx(acc[k]) and s[k]["frames"] == specs[k][0]
    # overall accuracy and robustness weigh each sequence by its length (12, 8, 7), not equally
    assert r["accuracy"] == pytest.approx((12 * 5.6 / 6 + 8 * 5.2 / 6 + 7 * 0.5) / 27)
    assert r["accuracy"] != pytest.approx(np.mean(list(acc.values())))
    assert r["robustness"] == pytest.approx((12 * 1 + 8 * 0 + 7 * 1) / 27) and r["failures"] == 2
    assert r["frames"] == 27

    # EAO pools the 5 fragments of all sequences, each with weight 1 (overlap at the init frame: 0):
    # a: [0 1 1 1] failed, [0 1 1 .6 1 1] to the end; b: [0 1 1 .6 1 1 .6 1] to the end; c: [0 1] failed, [0 1 .5]
    frags = [([0, 1, 1, 1], True), ([0, 1, 1, .6, 1, 1], False), ([0, 1, 1, .6, 1, 1, .6, 1], False),
             ([0, 1], True), ([0, 1, .5], False)]
    phi = []
    for N in range(1, 8):
        # a failed fragment counts at every N (zeros after its failure), a finished one only while N < its length
        vals = [sum(o[1:N + 1]) / N for o, failed in frags if failed or N < len(o)]
        phi.append(sum(vals) / len(vals))
    assert phi[:5] == pytest.approx([1.0, 4.25 / 5, (1 + 5.2 / 3 + 1 / 3) / 4, 2.8 / 4, 2.64 / 4])
    np.testing.assert_allclose(r["eao_curve"], [0.0] + phi, rtol=0, atol=1e-12)
    assert r["eao"] == pytest.approx(np.mean(phi[:5]))
    # pooling per fragment, not per sequence: at N = 2, a per-sequence mean would give (1 + 1 + 0.625) / 3
    assert r["eao_curve"][2] == pytest.approx(0.85) and r["eao_curve"][2] != pytest.approx(2.625 / 3)
    assert r["eao_interval_used"] == [1, 5]
