"""Calibration series: the Markov source, its reference losses, the data-defined attention
monitors, t* and the change-point detector, and the calib_* stages end to end."""
import json
import math

import numpy as np
import pytest

import pipelines
import torch

from emergence.analysis.boundaries import change_point
from emergence.analysis.induction import induction_chance, induction_scores, matching_keys, transition_step
from emergence.config import load_params
from emergence.data.markov import read_sequences, reference_losses, sample_chains, write_sequences

CAL = load_params("params.yaml").calibration


def test_markov_transitions_follow_their_matrices():
    x, P = sample_chains(2000, 200, 3, CAL.alpha, np.random.default_rng(0))
    assert x.dtype == np.uint16 and x.max() < 3 and P.shape == (2000, 3, 3)
    np.testing.assert_allclose(P.sum(-1), 1.0)
    prev, nxt = x[:, :-1].astype(int), x[:, 1:].astype(int)
    counts = np.zeros((3, 3))
    np.add.at(counts, (prev.ravel(), nxt.ravel()), 1)
    expected = np.zeros((3, 3))                  # sum over steps of P_seq[x_t, :]
    for i in range(3):
        expected[i] = (P[:, i, :] * (prev == i).sum(1)[:, None]).sum(0)
    np.testing.assert_allclose(counts, expected, rtol=0.02)
    first = np.bincount(x[:, 0], minlength=3) / 2000   # uniform first state
    np.testing.assert_allclose(first, 1 / 3, atol=0.04)


def test_sequences_roundtrip_one_per_window(tmp_path):
    x, _ = sample_chains(10, 9, 4, 1.0, np.random.default_rng(1))
    write_sequences(tmp_path / "s.bin", x)
    np.testing.assert_array_equal(read_sequences(tmp_path / "s.bin", 9), x)
    with pytest.raises(ValueError, match="not a multiple"):
        read_sequences(tmp_path / "s.bin", 7)


def test_reference_losses_are_ordered_at_the_pipeline_settings():
    x, _ = sample_chains(256, CAL.n_ctx + 1, CAL.k, CAL.alpha, np.random.default_rng(2))
    ref = {k: v.mean() for k, v in reference_losses(x.astype(np.int64), CAL.k, CAL.alpha).items()}
    assert ref["bigram"] < ref["unigram"] < ref["uniform"] == pytest.approx(math.log(CAL.k))


def test_reference_losses_by_hand():
    """k = 2, alpha = 1, x = 0 0 1 0: the posterior-mean predictions at t = 0, 1, 2."""
    ref = reference_losses(np.array([[0, 0, 1, 0]]), k=2, alpha=1.0)
    np.testing.assert_allclose(ref["unigram"], -np.log([2 / 3, 1 / 4, 3 / 5]))
    np.testing.assert_allclose(ref["bigram"], -np.log([1 / 2, 1 / 3, 1 / 2]))


def test_induction_score_of_ideal_and_uniform_heads():
    x, _ = sample_chains(16, 64, 4, 1.0, np.random.default_rng(3))
    tokens = torch.from_numpy(x.astype(np.int64))
    M = matching_keys(tokens).float()                                   # (B, T, T)
    T = tokens.shape[1]
    ideal = torch.where(M.sum(-1, keepdim=True) > 0, M / M.sum(-1, keepdim=True).clamp(min=1),
                        torch.eye(T).expand_as(M))                      # no match: attend to self
    prev = torch.zeros(T, T)
    prev[torch.arange(1, T), torch.arange(T - 1)], prev[0, 0] = 1.0, 1.0
    patterns = torch.stack([ideal, prev.expand_as(M)])[None]            # (1 layer, 2 heads, B, T, T)
    scores = induction_scores(patterns, tokens)[0]
    assert scores[0] == pytest.approx(1.0)
    brute, n = 0.0, 0                                                   # chance by a loop over queries
    for b in range(16):
        for i in range(T):
            match = [j for j in range(1, i + 1) if x[b, j - 1] == x[b, i]]
            if match:
                brute, n = brute + len(match) / (i + 1), n + 1
    assert induction_chance(tokens) == pytest.approx(brute / n, rel=1e-5)
    assert 0.2 < induction_chance(tokens) < 0.4 and scores[1] < 0.5


def test_transition_step_on_a_sigmoid():
    steps = list(range(0, 1650, 50))
    chance = 0.3
    curve = [chance + 0.6 / (1 + math.exp(-(s - 640) / 60)) for s in steps]
    assert transition_step(steps, curve, chance, CAL.min_rise) == 650
    assert transition_step(steps, [chance + 0.01] * len(steps), chance, CAL.min_rise) is None


def test_change_point_finds_a_kink_a_ramp_and_not_noise():
    rng = np.random.default_rng(0)
    steps = np.arange(0, 1650, 50)
    kink = np.where(steps < 600, 1.0, 1.0 - 1e-3 * (steps - 600)) + rng.normal(0, 0.01, len(steps))
    found = change_point(steps, kink, level=CAL.boundary_level)
    assert (found["step"], found["kind"]) == (600, "kink")
    half = 1.645 * 0.01                                                 # 90% intervals of the noise
    found = change_point(steps, kink, kink - half, kink + half, level=CAL.boundary_level, interval_level=0.9)
    assert found["step"] == 600 and found["slopes"][1] < found["slopes"][0]
    sigmoid = 0.3 + 0.5 / (1 + np.exp(-(steps - 700) / 80)) + rng.normal(0, 0.01, len(steps))
    found = change_point(steps, sigmoid, level=CAL.boundary_level)
    assert found["kind"] == "ramp" and abs(found["step"] - 700) <= 50  # the centre: halfway up
    false = 0
    for seed in range(40):
        flat = 1.0 + np.random.default_rng(seed).normal(0, 0.01, len(steps))
        without = change_point(steps, flat, level=CAL.boundary_level)
        with_iv = change_point(steps, flat, flat - half, flat + half, level=CAL.boundary_level, interval_level=0.9)
        false += (without["verdict"] == "change") + (with_iv["verdict"] == "change")
        if seed == 0:
            assert without == {**without, "step": None, "verdict": "no change", "kind": None}
    assert false <= 4                                                   # 80 tests at level 0.99


@pytest.fixture(scope="session")
def calibration_run(tmp_path_factory):
    """The calib_* stages run by DVC in a default workspace with a shorter sampler (started in the
    background when the session begins: see pipelines.py)."""
    return pipelines.result("calibration", tmp_path_factory.mktemp)


@pytest.mark.timeout(1800)  # ~2 minutes alone; a busy machine can make it many times that
def test_default_calibration_forms_the_induction_head_and_every_instrument_gets_a_verdict(calibration_run):
    """The calib_* stages at the default training settings (about a minute of training on two idle
    cores) with a shorter sampler: the induction head forms, the monitors find t* inside the run, and
    every instrument's change point and verdict against t* is made and recorded (which ones hit is a
    finding, printed here and reported by the pipeline, not asserted)."""
    root = calibration_run / "artifacts" / "calibration"
    d, mon, inst = (root / name for name in ("data", "monitors", "instruments"))
    c = load_params(calibration_run / "params.yaml").calibration
    metrics = json.loads((root / "metrics.json").read_text())
    print(json.dumps({k: (v["step"], v["verdict"]) for k, v in metrics["instruments"].items()}))
    curve = json.loads((mon / "curve.json").read_text())
    refs = json.loads((d / "references.json").read_text())["mean"]
    assert refs["bigram"] < refs["unigram"] < refs["uniform"]
    assert metrics["t_star"] is not None and curve[0]["step"] < metrics["t_star"] < curve[-1]["step"]
    assert curve[-1]["max_induction"] > metrics["induction_chance"] + c.min_rise     # the head formed
    assert curve[-1]["val_loss"] < refs["unigram"]                                   # past the unigram plateau
    assert metrics["instruments"]["max_induction"]["step"] is not None               # the monitor sees a change
    top = json.loads((mon / "metrics.json").read_text())["top_induction_head"]
    assert set(metrics["instruments"]) == {"val_loss", "max_induction", "max_previous_token", "max_prefix_matching",
                                           "icl", "llc", "bif_markov_to_markov", "bif_markov_to_shuffled",
                                           "bif_shuffled_to_shuffled", f"chi_{top}", f"rllc_{top}", "trajectory_turn"}
    steps = [r["step"] for r in curve]
    for name, v in metrics["instruments"].items():
        assert v["verdict"] in ("hit", "miss", "no change"), (name, v)
        assert v["step"] is None or v["step"] in steps, (name, v)
    heads = json.loads((inst / "heads.json").read_text())
    assert {h["component"] for h in heads} == {"L0H0", "L0H1", "L1H0", "L1H1"}
    assert all(h["chi_lo"] <= h["chi_hi"] and h["rllc_lo"] <= h["rllc_hi"] for h in heads)
    umap = json.loads((inst / "umap.json").read_text())
    assert len(umap) == 4 * len(c.sampler.checkpoints) and {r["component"] for r in umap} == {h["component"] for h in heads}
