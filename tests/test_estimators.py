"""Estimators against known answers: analytic learning coefficients, closed-form posterior
covariances of per-sample losses, and MCMC diagnostics on chains with known properties."""
import numpy as np
import pytest
import torch
from conftest import ROOT

from emergence.config import SamplerParams, as_dict, load_params
from emergence.estimators.bif import (bif_matrix, block_aggregates, token_bif_blocks,
                                      token_bif_by_sequence)
from emergence.estimators.diagnostics import effective_sample_size, split_rhat
from emergence.estimators.llc import DeadChainError, batch_means_interval, llc
from emergence.models.toy import (LinearRegression, NormalCrossing, PowerPotential, Quadratic, blr_loss_covariance,
                                  normal_crossing_llc, quadratic_llc, regression_problem, sample_potential)
from emergence.sampling.observables import Observables

DEFAULTS = load_params(ROOT / "params.yaml").sampler


def run_sgld(model, observables=None, **kw):
    cfg = SamplerParams(**{**dict(lr=1e-3, nbeta=100.0, localization=0.0, preconditioned=False,
                                  chains=8, burn_in=5000, draws=10000, thin=1, check_every=500, paired=False), **kw})
    return sample_potential(model, cfg, observables)


def run_default_sgld(model, observables=None, **kw):
    """The pipeline's sampler settings from params.yaml (preconditioner, eps, n*beta, gamma,
    burn-in); only the number of chains and draws is raised, to shrink the Monte Carlo error."""
    return run_sgld(model, observables, **{**as_dict(DEFAULTS), "chains": 8, "draws": 10000,
                                                    "check_every": 1000, "paired": False, **kw})


def test_default_sampler_recovers_a_regular_llc_at_finite_gamma():
    h = [10.0, 10.0, 30.0, 3.0]
    exact = quadratic_llc(h, DEFAULTS.nbeta, DEFAULTS.localization)
    est = llc(run_default_sgld(Quadratic(h)))
    print(f"regular LLC at finite gamma, default sampler: {est['llc']:.4f} "
          f"[{est['llc_lo']:.4f}, {est['llc_hi']:.4f}] vs exact {exact:.4f}")
    assert est["llc"] == pytest.approx(exact, rel=0.05)
    assert est["rhat"] < 1.05 and not est["negative"]


def test_default_sampler_recovers_a_singular_llc_at_finite_n():
    c = 3e4  # n*beta c / gamma^2 = 0.3: the quartic term shapes the posterior (a Gaussian answer is 0.3)
    exact = normal_crossing_llc(c, DEFAULTS.nbeta, DEFAULTS.localization)
    est = llc(run_default_sgld(NormalCrossing(c), draws=20000))
    print(f"normal-crossing LLC at finite n, default sampler: {est['llc']:.4f} "
          f"[{est['llc_lo']:.4f}, {est['llc_hi']:.4f}] vs exact {exact:.4f}")
    assert est["llc"] == pytest.approx(exact, rel=0.05)


def test_adaptive_preconditioner_is_biased_and_the_frozen_one_is_not():
    """At a quarter of the default step (discretisation error small), V frozen after burn-in
    converges to the exact answer; V re-estimated every step (Lee et al.) does not."""
    c = 1e5
    exact = normal_crossing_llc(c, DEFAULTS.nbeta, DEFAULTS.localization)
    kw = dict(lr=DEFAULTS.lr / 4, draws=20000)
    frozen = llc(run_default_sgld(NormalCrossing(c), **kw))
    adaptive = llc(run_default_sgld(NormalCrossing(c), rms_adapt="every_step", **kw))
    print(f"normal crossing c={c:g}, eps/4: frozen {frozen['llc']:.4f}, every-step {adaptive['llc']:.4f}, "
          f"exact {exact:.4f}")
    assert frozen["llc"] == pytest.approx(exact, rel=0.03)
    assert frozen["llc_lo"] < exact < frozen["llc_hi"] or abs(frozen["llc"] / exact - 1) < 0.01
    assert adaptive["llc"] / exact - 1 > 0.05


def test_batch_means_interval_covers_the_mean_of_correlated_draws():
    rng = np.random.default_rng(0)
    phi, covered = 0.9, 0
    for _ in range(200):
        x = np.zeros((2, 400))
        x[:, 0] = rng.normal(size=2) / np.sqrt(1 - phi ** 2)
        for t in range(1, 400):
            x[:, t] = phi * x[:, t - 1] + rng.normal(size=2)
        ci = batch_means_interval(x, level=0.9)
        covered += ci["lo"] < 0 < ci["hi"]
    assert 0.8 <= covered / 200 <= 0.97


@pytest.mark.parametrize("powers, expected", [
    ([1, 1, 1, 1], 2.0),                 # regular: d / 2
    ([2, 3], 1 / 4 + 1 / 6),             # singular: degenerate directions w^4, w^6
    ([1, 2, 3], 1 / 2 + 1 / 4 + 1 / 6),
])
def test_llc_recovers_asymptotic_learning_coefficients(powers, expected):
    """Large n*beta, no localization, plain SGLD: the estimate approaches lambda."""
    torch.manual_seed(0)
    trace = run_sgld(PowerPotential(powers))
    est = llc(trace)
    print(f"LLC of {powers}: {est['llc']:.3f} +- {est['llc_se']:.3f} vs {expected:.3f}")
    assert est["llc"] == pytest.approx(expected, rel=0.1)
    assert abs(est["llc"] - expected) < 4 * est["llc_se"] + 0.05 * expected
    assert est["rhat"] < 1.1


class TwoParameters(torch.nn.Module):
    """L = |a|^2 (1 + |b|^2): two parameters of different shapes, broadcast over leading dimensions."""

    def __init__(self):
        super().__init__()
        self.a = torch.nn.Parameter(torch.tensor([0.3, -0.2], dtype=torch.float64))
        self.b = torch.nn.Parameter(torch.tensor([[0.1, 0.4]], dtype=torch.float64))

    def forward(self):
        return (self.a ** 2).sum(-1) * (1 + (self.b ** 2).sum((-2, -1)))


def test_potential_chains_take_the_steps_of_the_per_replica_loop():
    """sample_potential computes every chain's loss in one forward; the trace (losses, paired losses at
    w*, observables) is the one of the pipeline's loop, a forward per replica, with the same noise."""
    from emergence.sampling.sampler_module import SGLDRun
    X, y, w_star = regression_problem()
    obs = Observables(lambda mod: {"obs": mod.per_sample().detach(), "token_obs": None, "component_obs": None},
                      [f"z{i}" for i in range(len(y))], np.array(["correct"] * len(y)), np.arange(len(y)).astype(str))
    cfg = SamplerParams(**{**as_dict(DEFAULTS), "chains": 3, "burn_in": 20, "draws": 30, "check_every": 10,
                           "obs_every": 5, "paired": True})
    for make, observables in ((lambda: LinearRegression(X, y, w_star), obs), (TwoParameters, None)):
        run = SGLDRun(make(), cfg, seed=0, loss_fn=lambda m, _: m(), observables=observables)
        run.measure_init([None])
        for s in range(cfg.steps):
            run.iterate(s, [None] * cfg.chains)
        ours, theirs = sample_potential(make(), cfg, observables), run.to_dataset()
        for name in ("loss", "anchor_loss") + (("obs",) if observables else ()):
            np.testing.assert_allclose(ours[name].values, theirs[name].values, rtol=1e-12, err_msg=name)
        assert np.ptp(ours["loss"].values[:, -1]) > 0 and np.nanmin(ours["anchor_loss"].values) > 0


def test_a_potential_that_does_not_broadcast_is_refused():
    class Summed(Quadratic):
        def forward(self):
            return 0.5 * (self.h * self.w ** 2).sum()  # one number for all chains
    with pytest.raises(ValueError, match=r"Summed.forward gave losses of shape \(\) for 8 chains"):
        run_sgld(Summed([1.0, 2.0]), burn_in=2, draws=2)


def test_burn_in_is_excluded_from_the_llc():
    trace = run_sgld(PowerPotential([1, 1]), burn_in=10, draws=50)
    trace["loss"][:, :10] = 1e6  # poisoned burn-in would dominate any average over it
    assert llc(trace)["llc"] < 10


def test_dead_chain_fails_loudly():
    trace = run_sgld(PowerPotential([1, 1]), burn_in=10, draws=50)
    trace["loss"][1, 30] = np.nan
    with pytest.raises(DeadChainError, match="chain 1"):
        llc(trace)


def test_default_sampler_bif_matches_closed_form_posterior_covariance():
    X, y, w_star = regression_problem()
    n = len(y)
    exact = -blr_loss_covariance(X, y, w_star, DEFAULTS.nbeta, DEFAULTS.localization)
    model = LinearRegression(X, y, w_star)
    obs = Observables(lambda mod: {"obs": mod.per_sample().detach(), "token_obs": None, "component_obs": None},
                      [f"z{i}" for i in range(n)],
                      np.array(["correct"] * n), np.arange(n).astype(str))
    trace = run_default_sgld(model, obs, draws=6000, obs_every=2)
    sampled = bif_matrix(trace["obs"].values)
    error = np.linalg.norm(sampled - exact) / np.linalg.norm(exact)
    iu = np.triu_indices(n)
    r = np.corrcoef(sampled[iu], exact[iu])[0, 1]
    print(f"BIF vs closed form, default sampler: relative Frobenius error {error:.3f}, Pearson {r:.4f}")
    assert error < 0.10
    big = np.abs(exact[iu]) > 0.2 * np.abs(exact).max()
    assert (np.sign(sampled[iu][big]) == np.sign(exact[iu][big])).mean() > 0.95


def test_pearson_form_and_token_level_aggregation():
    rng = np.random.default_rng(0)
    base = rng.normal(size=(2, 500, 1))
    tokens = np.concatenate([base + 0.3 * rng.normal(size=(2, 500, 3)),      # 3 tokens of sequence 0
                             -base + 0.3 * rng.normal(size=(2, 500, 2))], 2)  # 2 tokens of sequence 1
    owner = np.array([0, 0, 0, 1, 1])
    per_seq = token_bif_by_sequence(tokens, owner, 2)
    full = np.zeros((5, 5))
    for rows, cols, blk in token_bif_blocks(tokens, block=2):
        full[rows, cols] = blk
    expected = np.array([[full[np.ix_(owner == i, owner == j)].mean() for j in range(2)] for i in range(2)])
    np.testing.assert_allclose(per_seq, expected, atol=1e-10)
    assert per_seq[0, 1] > 0.8 and per_seq[0, 0] < -0.8  # anti-correlated losses: positive BIF
    pear = bif_matrix(tokens, pearson=True)
    np.testing.assert_allclose(pear, full, atol=1e-10)


def test_block_aggregates_and_intervals():
    labels = np.array(["correct"] * 3 + ["buggy"] * 3)
    groups = np.array(["a", "b", "c"] * 2)
    M = np.zeros((6, 6))
    M[:3, :3], M[:3, 3:], M[3:, 3:] = -1.0, 0.5, -2.0
    M[3:, :3] = 0.5
    agg = block_aggregates(M, labels, groups, n_boot=50)
    assert agg["correct->correct"]["mean"] == -1.0
    assert agg["correct->buggy"]["mean"] == 0.5 and agg["buggy->buggy"]["mean"] == -2.0
    assert agg["correct->buggy/same_problem"]["lo"] == agg["correct->buggy/same_problem"]["hi"] == 0.5
    np.fill_diagonal(M, 100.0)  # the diagonal never enters an aggregate
    assert block_aggregates(M, labels, groups, n_boot=5)["correct->correct"]["mean"] == -1.0


def test_rhat_and_ess_on_chains_with_known_properties():
    rng = np.random.default_rng(0)
    iid = rng.normal(size=(4, 2000))
    assert split_rhat(iid) == pytest.approx(1.0, abs=0.01)
    assert effective_sample_size(iid) == pytest.approx(8000, rel=0.15)
    phi = 0.8
    ar = np.zeros((4, 4000))
    for t in range(1, 4000):
        ar[:, t] = phi * ar[:, t - 1] + rng.normal(size=4)
    assert effective_sample_size(ar) == pytest.approx(16000 * (1 - phi) / (1 + phi), rel=0.25)
    shifted = iid + np.arange(4)[:, None]
    assert split_rhat(shifted) > 1.5


def test_block_bootstrap_adds_no_same_problem_pairs():
    """Strong same-problem entries must not leak into the different-problem interval."""
    labels = np.array(["correct"] * 20 + ["buggy"] * 20)
    groups = np.array([f"p{i}" for i in range(20)] * 2)
    M = np.full((40, 40), -0.1)
    for i in range(20):
        M[i, 20 + i] = M[20 + i, i] = -1.0
    agg = block_aggregates(M, labels, groups, n_boot=200)
    cb = agg["correct->buggy"]
    assert cb["lo"] <= cb["mean"] <= cb["hi"]
    assert agg["correct->buggy/different_problem"]["lo"] == pytest.approx(-0.1)


@pytest.mark.parametrize("preconditioned, exact", [(True, True), (True, False), (False, True), (False, False)])
def test_sgld_step_is_the_formula_and_freezes_after_the_burn_in(preconditioned, exact):
    """One update against the formula written out: h = eps / (sqrt(V) + alpha) with V the bias-corrected mean of
    g^2 over the burn-in (or h = eps), the localization integrated exactly (or an Euler step), the mask respected."""
    from emergence.sampling.sgld import RMSPropSGLD
    torch.manual_seed(0)
    w0 = torch.randn(3, 50)
    mask = (torch.rand(3, 50) > 0.3).float()
    w = torch.nn.Parameter(w0.clone())
    opt = RMSPropSGLD([w], lr=1e-3, nbeta=50.0, localization=100.0, preconditioned=preconditioned, adapt_steps=2,
                      exact_localization=exact, mask=mask, generator=torch.Generator().manual_seed(1))
    xi = torch.Generator().manual_seed(1)
    grads = [torch.randn(3, 50) for _ in range(4)]
    v = torch.zeros(3, 50)
    for t, g in enumerate(grads, 1):
        before = w.detach().clone()
        w.grad = g
        opt.step()
        if t <= 2:
            v = 0.99 * v + 0.01 * g ** 2
            v_hat = v / (1 - 0.99 ** t)
        h = 1e-3 / (v_hat.sqrt() + 0.1) if preconditioned else torch.full_like(g, 1e-3)
        noise = torch.randn(3, 50, generator=xi)
        u = before - w0
        if exact:
            keep = torch.exp(-50.0 * h)
            expected = w0 + keep * u - (1 - keep) * 0.5 * g + ((1 - keep ** 2) / 100.0).sqrt() * noise * mask
            expected = torch.where(mask.bool(), expected, before)
        else:
            expected = before + mask * (-0.5 * h * (50.0 * g + 100.0 * u) + h.sqrt() * noise)
        assert torch.allclose(w.detach(), expected, atol=1e-6), (t, (w.detach() - expected).abs().max())
    assert "coef" in opt.state[w] and "square_avg" not in opt.state[w]  # eps_hat constant: cached, V freed
