"""Known-answer errors of the sampler: the default (RMSProp preconditioner frozen after burn-in,
exact localization step), Lee et al.'s every-step preconditioner and plain SGLD, all at the
pipeline's eps, n*beta and gamma from params.yaml, on the same seeds and draws.

Cases (``emergence.models.toy``): a regular quadratic at finite gamma, a normal-crossing
potential at finite n (exact answer by quadrature), and the BIF of Bayesian linear
regression against its closed-form posterior covariance (relative Frobenius error).

    python benchmarks/bench_sampler_accuracy.py [--draws 10000] [--chains 8]
"""
from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import numpy as np

from common import report
from emergence.config import load_params
from emergence.estimators.bif import bif_matrix
from emergence.estimators.llc import llc
from emergence.models import toy
from emergence.sampling.observables import Observables

SAMPLERS = {"default (frozen after burn-in)": {},
            "every-step preconditioner (Lee et al.)": {"rms_adapt": "every_step"},
            "plain SGLD": {"preconditioned": False}}


def cases(cfg):
    h, c = [10.0, 10.0, 30.0, 3.0], 3e4
    X, y, w_star = toy.regression_problem()
    n = len(y)
    exact_bif = -toy.blr_loss_covariance(X, y, w_star, cfg.nbeta, cfg.localization)
    obs = Observables(lambda m: {"obs": m.per_sample().detach(), "token_obs": None, "component_obs": None},
                      [f"z{i}" for i in range(n)], np.array(["correct"] * n), np.arange(n).astype(str))

    def regular(run):
        return llc(run(toy.Quadratic(h)))["llc"] / toy.quadratic_llc(h, cfg.nbeta, cfg.localization) - 1

    def singular(run):
        exact = toy.normal_crossing_llc(c, cfg.nbeta, cfg.localization)
        return llc(run(toy.NormalCrossing(c)))["llc"] / exact - 1

    def blr_bif(run):
        trace = run(toy.LinearRegression(X, y, w_star), obs, obs_every=2)
        return float(np.linalg.norm(bif_matrix(trace["obs"].values) - exact_bif) / np.linalg.norm(exact_bif))
    return {"regular LLC, relative error": regular, "normal-crossing LLC, relative error": singular,
            "BLR BIF, relative Frobenius error": blr_bif}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--draws", type=int, default=10000)
    ap.add_argument("--chains", type=int, default=8)
    args = ap.parse_args()
    base = dataclasses.replace(load_params(Path(__file__).resolve().parents[1] / "params.yaml").sampler,
                               chains=args.chains, draws=args.draws, check_every=1000, paired=False)
    table = {}
    for name, change in SAMPLERS.items():
        cfg = dataclasses.replace(base, **change)

        def run(model, observables=None, **kw):
            return toy.sample_potential(model, dataclasses.replace(cfg, **kw), observables)
        t0 = time.perf_counter()
        table[name] = {case: round(float(fn(run)), 4) for case, fn in cases(cfg).items()}
        table[name]["seconds"] = round(time.perf_counter() - t0, 1)
    report("sampler_accuracy", {"settings": {k: getattr(base, k) for k in ("lr", "nbeta", "localization", "rms_alpha",
                                                                          "rms_beta", "burn_in", "chains", "draws")},
                                "errors": table})


if __name__ == "__main__":
    main()
