"""BIF on a planted case with a known answer: two groups of samples whose losses depend on
disjoint weights (cross-group influence 0), with and without a common mode added; the
interval rules for peaks and sign flips; the influence stage's rows and metrics."""
import types

import numpy as np
import xarray as xr

from emergence.analysis import dynamics
from emergence.estimators.bif import (bif_matrix, block_aggregates, common_mode, draw_resampler,
                                      without_common_mode)

N = 6          # samples per group; problem i has correct sample A_i and buggy sample B_i


def planted(common: float, chains: int = 4, draws: int = 2000, seed: int = 0) -> np.ndarray:
    """(chain, draw, 2N) per-sample losses at draws of a Gaussian posterior w ~ N(0, s^2 I_3):
    l_{A_i} = c_i w1 + w1^2 / 2, l_{B_i} = c_i w2 + w2^2 / 2 with c_i = +-1, 2 (the samples of a
    group disagree on the direction, as per-sample gradients do at w*), plus common * w3 on all."""
    rng = np.random.default_rng(seed)
    w = rng.normal(0, 0.1, size=(chains, draws, 3))
    c = np.array([1.0, -1.0, 2.0, -2.0, 1.0, -1.0])
    a = c * w[..., :1] + 0.5 * w[..., :1] ** 2
    b = c * w[..., 1:2] + 0.5 * w[..., 1:2] ** 2
    return np.concatenate([a, b], -1) + common * w[..., 2:3]


LABELS = np.array(["correct"] * N + ["buggy"] * N)
GROUPS = np.array([f"p{i}" for i in range(N)] * 2)
WITHIN = np.zeros((2 * N, 2 * N), bool)
WITHIN[:N, :N] = WITHIN[N:, N:] = True
WITHIN &= ~np.eye(2 * N, dtype=bool)
CROSS = np.zeros((2 * N, 2 * N), bool)
CROSS[:N, N:] = CROSS[N:, :N] = True


def test_disjoint_groups_have_no_cross_influence():
    m = bif_matrix(planted(0.0), pearson=True)
    assert np.abs(m[CROSS]).max() < 0.1
    assert np.abs(m[WITHIN]).min() > 0.9
    cov = bif_matrix(planted(0.0))
    assert np.abs(cov[CROSS]).max() < 0.1 * np.abs(cov[WITHIN]).min()


def test_common_mode_is_measured_and_its_removal_recovers_the_disjoint_structure():
    clean = bif_matrix(planted(0.0), pearson=True)
    obs = planted(3.0)
    raw = bif_matrix(obs, pearson=True)
    assert np.abs(raw[CROSS]).min() > 0.5                      # the common mode drowns the structure
    mode = common_mode(obs)
    assert mode["share"] > 0.8 and mode["alignment"] > 0.99
    assert common_mode(planted(0.0))["alignment"] < 0.2      # without it, PC1 is one group's mode
    removed = bif_matrix(without_common_mode(obs), pearson=True)
    assert np.abs(removed[CROSS]).max() < 0.1
    np.testing.assert_allclose(removed[WITHIN], clean[WITHIN], atol=0.05)

    raw_agg = block_aggregates(raw, LABELS, GROUPS, n_boot=200)
    removed_agg = block_aggregates(removed, LABELS, GROUPS, n_boot=200)
    assert raw_agg["correct->buggy"]["hi"] < -0.5
    cb = removed_agg["correct->buggy"]
    assert abs(cb["mean"]) < 0.05 and cb["lo"] <= cb["mean"] <= cb["hi"] and cb["hi"] - cb["lo"] < 0.1
    assert all(a["skipped"] == 0 for a in removed_agg.values() if np.isfinite(a["mean"]))


def test_bootstrap_counts_resamples_with_an_empty_block():
    """Problem p0 has both versions, p1..p3 only a correct one: a resample without p0 has no
    correct->buggy entry; such resamples are counted, not dropped silently."""
    labels = np.array(["correct", "buggy", "correct", "correct", "correct"])
    groups = np.array(["p0", "p0", "p1", "p2", "p3"])
    m = -np.ones((5, 5))
    agg = block_aggregates(m, labels, groups, n_boot=400, seed=1)
    skipped = agg["correct->buggy"]["skipped"]
    assert 0.2 * 400 < skipped < 0.45 * 400                  # P(no p0 in 4 draws) = (3/4)^4 = 0.32
    assert agg["correct->correct"]["skipped"] < 0.05 * 400    # empty only when one problem is drawn 4 times


def test_peaks_need_separated_intervals_and_never_sit_on_a_negative_llc():
    steps = [0, 1, 2, 4, 8]
    v = [1.0, 3.0, 1.0, 1.0, 1.0]
    assert dynamics.resolved_peaks(steps, v, [0.9, 2.5, 0.9, 0.9, 0.9], [1.1, 3.5, 1.1, 1.1, 1.1]) == [1]
    overlapping = [0.0, 1.0, 0.0, 0.0, 0.0], [2.0, 5.0, 2.0, 2.0, 2.0]
    assert dynamics.resolved_peaks(steps, v, *overlapping) == dynamics.NOT_RESOLVED
    assert dynamics.resolved_peaks(steps, [1.0] * 5, [0.9] * 5, [1.1] * 5) == dynamics.NONE
    tight = [x - 0.1 for x in v], [x + 0.1 for x in v]
    assert dynamics.resolved_peaks(steps, v, *tight, eligible=[True, False, True, True, True]) == dynamics.NONE
    # a negative-magnitude curve peaks in |value|; an ineligible neighbour is passed over
    neg = [-x for x in v]
    assert dynamics.peaks(steps, neg, [x - 0.1 for x in neg], [x + 0.1 for x in neg]) == [1]
    w = [1.0, 3.0, -9.0, 1.0, 1.0]
    lo, hi = [x - 0.1 for x in w], [x + 0.1 for x in w]
    assert dynamics.peaks(steps, w, lo, hi) == [2]
    assert dynamics.peaks(steps, w, lo, hi, eligible=[True, True, False, True, True]) == [1]


def test_sign_flips_need_intervals_excluding_zero_on_both_sides():
    steps = [0, 1, 2, 3]
    v = [-1.0, -0.1, 0.2, 1.0]
    lo = [-1.2, -0.5, -0.3, 0.8]
    hi = [-0.8, 0.3, 0.6, 1.2]
    assert dynamics.resolved_flips(steps, v, lo, hi) == [3]   # across the checkpoints holding 0
    assert dynamics.resolved_flips(steps, v, [-1.2, -0.5, -0.3, -0.1], [-0.8, 0.3, 0.6, 1.2]) == dynamics.NOT_RESOLVED
    assert dynamics.resolved_flips(steps, [1.0] * 4, [0.5] * 4, [1.5] * 4) == dynamics.NONE


def fake_trace(common: float, seed: int) -> xr.Dataset:
    obs = planted(common, draws=300, seed=seed)
    return xr.Dataset({"obs": (("chain", "draw", "observable"), obs)},
                      coords={"observable": [f"{lab}/{g}" for lab, g in zip(LABELS, GROUPS)],
                              "label": ("observable", LABELS), "group": ("observable", GROUPS)})


def test_influence_rows_and_metrics(monkeypatch):
    """The stage's rows carry the LLC interval and flag, the common mode and both block
    aggregates; a negative-LLC checkpoint is flagged and is not a peak; nothing is None."""
    from emergence.stages import influence

    estimates = iter([(5.0, 4.0, 6.0), (50.0, 45.0, 55.0), (-3.0, -4.0, -2.0), (5.0, 4.0, 6.0)])

    def stub_llc(trace, level=0.9):
        mean, lo, hi = next(estimates)
        return {"llc": mean, "llc_se": 0.5, "llc_lo": lo, "llc_hi": hi, "rhat": 1.0, "ess": 100.0,
                "negative": hi < 0, "llc_per_chain": [mean] * 4}

    monkeypatch.setattr(influence, "llc", stub_llc)
    p = types.SimpleNamespace(seed=0, influence=types.SimpleNamespace(bootstrap=50, level=0.9, pearson=True))
    rows = [influence.curve_row(s, influence.analyse(fake_trace(3.0, s), p)) for s in (0, 1, 2, 4)]
    assert [r["llc_negative"] for r in rows] == [False, False, True, False]
    r = rows[0]
    assert r["common_mode_share"] > 0.8
    assert r["correct_to_buggy_hi"] < -0.5
    assert r["correct_to_buggy_mode_removed_lo"] < 0.1 and r["correct_to_buggy_mode_removed_hi"] > -0.1
    assert r["correct_to_buggy_bootstrap_skipped"] == 0 and "buggy_to_buggy_mode_removed_bootstrap_skipped" in r
    m = influence.summarise(rows, 50)
    assert m["peaks"]["llc"] == [1] and m["llc_negative_steps"] == [2] and m["final_llc_negative"] is False
    assert m["bootstrap_skipped"] == {}
    assert all(v is not None for v in m.values())
    figs = influence.figures(rows, m, True)
    assert influence.NEGATIVE_LLC in [t.get_text() for t in figs["llc"].axes[0].get_legend().get_texts()]
    from emergence.stages.report import NEGATIVE, _influence, text
    page = _influence(m)
    assert "checkpoints with a negative LLC: 2 (" + NEGATIVE in page
    assert not any(raw in page for raw in ("None", "{}", "[]", "nan"))
    assert text(None) == text({}) == text([]) == "none" and text(float("nan")) == "not resolved"


def test_intervals_with_resampled_draws_hold_another_seed():
    """Short chains: the problem bootstrap alone misses the Monte Carlo error of the matrix;
    resampling blocks of draws in the same replicate covers another seed's estimate."""
    def form(draws):
        return bif_matrix(draws, pearson=True)
    covered = {"problems": 0, "problems and draws": 0}
    for seed in range(20):
        a, b = planted(1.0, chains=2, draws=20, seed=seed), planted(1.0, chains=2, draws=20, seed=100 + seed)
        other = block_aggregates(form(b), LABELS, GROUPS, n_boot=10)["correct->buggy"]["mean"]
        for name, resample in (("problems", None), ("problems and draws", draw_resampler(a, form))):
            agg = block_aggregates(form(a), LABELS, GROUPS, n_boot=300, seed=seed, resample=resample)
            covered[name] += agg["correct->buggy"]["lo"] <= other <= agg["correct->buggy"]["hi"]
    assert covered["problems and draws"] >= 15
    assert covered["problems"] < covered["problems and draws"]


def test_blocks_of_any_two_classes_match_the_correct_buggy_blocks():
    """The calibration's markov/shuffled blocks are the same estimator as correct/buggy, relabelled."""
    rng = np.random.default_rng(0)
    m = rng.normal(size=(8, 8))
    labels = np.array(["correct", "buggy"] * 4)
    groups = np.repeat([f"p{i}" for i in range(4)], 2)
    named = block_aggregates(m, labels, groups, n_boot=50, seed=3)
    relabelled = np.where(labels == "correct", "markov", "shuffled")
    other = block_aggregates(m, relabelled, groups, n_boot=50, seed=3, classes=("markov", "shuffled"))
    assert other["markov->shuffled"] == named["correct->buggy"] and other["markov->markov"] == named["correct->correct"]
