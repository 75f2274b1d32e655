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
        return 0.5 * (self.a ** 2 + self.b ** 2).sum(-1)


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
    import umap  # its kernels are cached on disk: later processes skip their ~9 s compile
    assert umap.umap_.smooth_knn_dist.stats.cache_path is not None


def sample_toy(observe, labels, components, nbeta=50.0, draws=6000, token_owner=None):
    obs = Observables(observe, [f"o{i}" for i in range(len(labels))], np.array(labels),
                      np.array(["x"] * len(labels)), token_owner)
    cfg = SamplerParams(lr=2e-3, nbeta=nbeta, localization=0.0, preconditioned=False, chains=4,
                        burn_in=500, draws=draws, check_every=1000)
    run = SGLDRun(TwoComponents(), cfg, seed=0, loss_fn=lambda m, b: m(), observables=obs, components=components)
    run.measure_init([None])
    for s in range(cfg.steps):
        run.iterate(s, [None] * cfg.chains)
    return run.to_dataset()


def test_restricted_loss_susceptibility_matches_the_closed_form():
    """phi_V = L(w) under the posterior restricted to V (the paper's component observable).

    L = (a^2 + b^2) / 2, shift loss l = L + c a^2. Restricted to a (b = b* = 0): a ~ N(0, s2),
    phi = a^2 / 2, Delta = c a^2, chi_a = -(c / 2) Var(a^2) = -c s2^2. Restricted to b:
    Delta = 0 at every draw, chi_b = 0. The per-token attributions of the two-token shift
    sequence (token losses L + 2c a^2 and L) average to the sequence's chi."""
    from emergence.estimators.susceptibility import restricted_loss, token_attribution
    c, nbeta = 2.0, 50.0

    def observe(m):
        ref = float(m())
        t1, t2 = ref + 2 * c * float(m.a ** 2), ref
        return {"obs": torch.tensor([ref, (t1 + t2) / 2]), "token_obs": torch.tensor([t1, t2]),
                "component_obs": None, "reads": None}

    labels = np.array(["sampling", "shift"])
    chi = {}
    for comp in ("a", "b"):
        ds = sample_toy(observe, labels, [comp], nbeta, token_owner=np.array([1, 1]))
        assert ds["obs"].values[..., 0].std() > 0          # the restricted chains move
        phi = restricted_loss(ds["obs"].values, labels)
        chi[comp] = susceptibility_matrix(phi, ds["obs"].values, labels, ["shift"])[0, 0]
        tokens = token_attribution(phi, ds["token_obs"].values, ds["obs"].values, labels)
        assert tokens.mean() == pytest.approx(chi[comp], rel=1e-4, abs=1e-12)
    s2 = 1.0 / nbeta
    assert chi["a"] == pytest.approx(-c * s2 ** 2, rel=0.2)
    assert chi["b"] == pytest.approx(0.0, abs=1e-12)


def test_sae_feature_susceptibility_reads_the_planted_latent(tmp_path):
    """A standard SAE whose latent 0 reads residual direction e_0 and latent 1 reads e_1.
    The final-token residual is (2 + a, 3, 0, 0) at every pair sequence and the shift loss
    moves by c a, so chi_latent0 = -c Var(a) and chi_latent1 = 0 (a constant observable)."""
    import xarray as xr
    from emergence.config import load_params
    from emergence.io import write_json
    from emergence.sae.sae_module import make_sae
    from emergence.stages.susceptibility import SHIFTS, sae_rows
    from tests.conftest import ROOT
    sae = make_sae("standard", d_in=4, d_sae=3)
    with torch.no_grad():
        sae.W_enc.zero_()
        sae.W_enc[0, 0] = sae.W_enc[1, 1] = sae.W_enc[2, 2] = 1.0
        sae.b_enc.zero_()
        sae.b_dec.zero_()
    sae.save_inference_model(tmp_path / "sae")
    write_json(tmp_path / "directions.json", {"hook": "blocks.0.hook_resid_post", "top_k_latents": [0],
                                              "latents": {"t_max": 1, "t_min": 1, "steering": 0}})
    rng = np.random.default_rng(0)
    c, C, D, r = 1.5, 2, 400, 3
    a = rng.uniform(-1, 1, size=(C, D))
    reads = np.zeros((C, D, r, 4), dtype=np.float32)
    reads[..., 0] = (2 + a)[..., None]
    reads[..., 1] = 3.0
    labels = ["correct", "buggy", "general", "sampling"]
    obs = np.stack([c * a, np.zeros_like(a), np.zeros_like(a), np.zeros_like(a)], -1)
    trace = xr.Dataset({"obs": (("chain", "obs_draw", "observable"), obs),
                        "reads": (("chain", "obs_draw", "read_sequence", "d_model"), reads)},
                       coords={"label": ("observable", labels)}, attrs={"reads_layer": 0})
    p = load_params(ROOT / "params.yaml", ["susceptibility.bootstrap=20"])
    rows = sae_rows(trace, tmp_path / "trace.nc", tmp_path, p)
    assert rows.names == ["SAE0", "SAE1"]
    expected = -c * np.var(a.reshape(-1).astype(np.float32), ddof=1)
    assert rows.chi[0, SHIFTS.index("correct")] == pytest.approx(expected, rel=1e-4)
    assert rows.chi[1, SHIFTS.index("correct")] == pytest.approx(0.0, abs=1e-9)
    assert rows.chi[0, SHIFTS.index("buggy")] == pytest.approx(0.0, abs=1e-9)


def test_units_get_separate_matrices_svds_and_rankings():
    """chi of SAE activations (here ~1e6 times larger) never enters the heads' SVD or ranking."""
    from emergence.stages.susceptibility import Rows, unit_tables

    def part(names, chi):
        return Rows(names, chi, chi - 0.1 * np.abs(chi), chi + 0.1 * np.abs(chi), np.zeros((len(names), 2)),
                    None, None)
    weight = part(["L0H0", "L0.mlp"], np.array([[1e-3, -2e-3, 0.0], [5e-4, 4e-4, 0.0]]))
    sae = part(["SAE1", "SAE2"], 1e3 * np.array([[2.0, -1.0, 0.0], [1.0, 1.0, 1.0]]))
    tables = unit_tables({"restricted_loss": weight, "sae_activation": sae})
    assert tables["restricted_loss"] == unit_tables({"restricted_loss": weight})["restricted_loss"]
    assert [o["component"] for o in tables["restricted_loss"]["opposite"]] == ["L0H0"]
    assert [o["component"] for o in tables["sae_activation"]["opposite"]] == ["SAE1"]
    svd = tables["restricted_loss"]["svd"]
    assert len(svd["component_loadings"]) == 2 and svd["singular_values"][0] < 1e-2


def test_output_norm_chi_with_the_default_sampler():
    """The pipeline's sampler settings (frozen preconditioner, eps, n*beta, gamma from params.yaml):
    a ~ N(0, s2) with s2 = 1 / (n*beta + gamma), so chi_A = -c Var(a^2) = -2 c s2^2 and chi_B = 0."""
    import dataclasses

    from conftest import ROOT

    from emergence.config import load_params
    from emergence.models.toy import sample_potential
    c = 2.0

    def observe(m):
        ref = float(m())
        return {"obs": torch.tensor([ref, ref + c * float(m.a ** 2)]), "token_obs": None,
                "component_obs": torch.tensor([float(m.a ** 2), float(m.b ** 2)])}
    obs = Observables(observe, ["ref", "shift"], np.array(["sampling", "shift"]), np.array(["x", "x"]),
                      components=["A", "B"])
    cfg = dataclasses.replace(load_params(ROOT / "params.yaml").sampler, chains=8, draws=8000, obs_every=4,
                              check_every=1000, paired=False)
    ds = sample_potential(TwoComponents(), cfg, obs)
    chi = susceptibility_matrix(ds["component_obs"].values, ds["obs"].values, np.array(["sampling", "shift"]),
                                ["shift"])
    s2 = 1.0 / (cfg.nbeta + cfg.localization)
    print(f"chi_A default sampler {chi[0, 0]:.3e} vs exact {-2 * c * s2 ** 2:.3e}")
    assert chi[0, 0] == pytest.approx(-2 * c * s2 ** 2, rel=0.2)
    assert abs(chi[1, 0]) < 0.1 * 2 * c * s2 ** 2
