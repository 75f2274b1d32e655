"""Susceptibilities on a model with a known answer, and a seeded, stable embryology embedding."""
import numpy as np
import pytest
import torch
import torch.nn as nn

from emergence.config import SamplerParams
from emergence.estimators.susceptibility import (bootstrap_interval, opposite_responses,
                                                 sequence_profiles, susceptibility_matrix)
from emergence.sampling.observables import Observables
from emergence.sampling.sampler_module import SGLDRun


class TwoComponents(nn.Module):
    """L(w) = (a^2 + b^2) / 2, so a, b ~ N(0, 1 / nbeta); the shift's loss l_j = L + c a^2 + e b."""

    def __init__(self):
        super().__init__()
        self.a = nn.Parameter(torch.zeros(1, dtype=torch.float64))
        self.b = nn.Parameter(torch.zeros(1, dtype=torch.float64))

    def forward(self):
        return 0.5 * (self.a ** 2 + self.b ** 2).sum()


def test_chi_is_large_for_the_component_that_moves_the_shift_loss_and_zero_for_the_other():
    c, e, nbeta = 2.0, 0.0, 50.0
    model = TwoComponents()

    def observe(m):
        a2, b2 = float(m.a ** 2), float(m.b ** 2)
        ref = float(m())
        shifted = ref + c * a2 + e * float(m.b)
        return {"obs": torch.tensor([ref, shifted]), "token_obs": None,
                "component_obs": torch.tensor([a2, b2])}

    obs = Observables(observe, ["ref", "shift"], np.array(["sampling", "shift"]), np.array(["x", "x"]),
                      components=["A", "B"])
    cfg = SamplerParams(lr=2e-3, nbeta=nbeta, localization=0.0, preconditioned=False, chains=4,
                        burn_in=500, draws=6000, check_every=1000)
    run = SGLDRun(model, cfg, seed=0, loss_fn=lambda m, b: m(), observables=obs)
    run.measure_init([None])
    for s in range(cfg.steps):
        run.iterate(s, [None] * cfg.chains)
    ds = run.to_dataset()
    chi = susceptibility_matrix(ds["component_obs"].values, ds["obs"].values, np.array(["sampling", "shift"]),
                                ["shift"])
    sigma2 = 1.0 / nbeta
    expected_a = -c * 2 * sigma2 ** 2  # -c Var(a^2), a ~ N(0, sigma2)
    assert chi[0, 0] == pytest.approx(expected_a, rel=0.2)
    assert abs(chi[1, 0]) < 0.1 * abs(expected_a)
    lo, hi = bootstrap_interval(ds["component_obs"].values, ds["obs"].values,
                                np.array(["sampling", "shift"]), ["shift"], n_boot=100)
    assert hi[0, 0] < 0 and lo[1, 0] < 0 < hi[1, 0]


def test_opposite_responses_and_profiles():
    chi = np.array([[1.0, -2.0], [0.5, 0.4], [-3.0, 0.05]])
    lo, hi = chi - 0.1, chi + 0.1
    ranked = opposite_responses(chi, lo, hi, ["A", "B", "C"])
    assert [r["component"] for r in ranked] == ["A", "C"]
    assert ranked[0]["significant"] and not ranked[1]["significant"]
    rng = np.random.default_rng(0)
    comp = rng.normal(size=(2, 50, 3))
    obs = rng.normal(size=(2, 50, 5))
    labels = np.array(["correct", "buggy", "correct", "sampling", "sampling"])
    prof = sequence_profiles(comp, obs, labels)
    assert prof.shape == (3, 3)
    manual = susceptibility_matrix(comp, obs, labels, ["correct"])
    np.testing.assert_allclose(prof[:, [0, 2]].mean(1), manual[:, 0], atol=1e-12)


def test_umap_is_seeded_and_stable():
    from emergence.analysis.embryology import embed
    rng = np.random.default_rng(0)
    comps = [f"L{layer}H{h}" for layer in range(2) for h in range(4)] + ["L0.mlp", "L1.mlp"]
    profiles = {s: rng.normal(size=(len(comps), 12)) + s for s in (0, 10, 100)}
    a = embed(profiles, comps, seed=3)
    b = embed(profiles, comps, seed=3)
    np.testing.assert_array_equal(a[["x", "y"]].values, b[["x", "y"]].values)
    assert set(a.columns) >= {"step", "component", "layer", "head", "x", "y"} and len(a) == 30
    assert a[a.component == "L1.mlp"].kind.iloc[0] == "mlp"
