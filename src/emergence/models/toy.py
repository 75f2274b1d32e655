"""Models whose tempered, localized posterior has a known answer, for validating the sampler
and the estimators (tests, ``benchmarks/bench_sampler_accuracy.py``, notebooks).

The posterior is p(w) ~ exp(-n*beta L(w) - gamma |w - w*|^2 / 2) with w* = 0 (or the
least-squares solution for regression), and the LLC estimator's target is
n*beta (E[L(w)] - L(w*)) (Lau et al. 2023, arXiv 2308.12108). Each model's forward is its
potential L and broadcasts over leading dimensions of its weights: given a (chains, d) stack
of weight vectors it returns the (chains,) losses (see `sample_potential`).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
import xarray as xr
from torch.func import functional_call

from emergence.config import SamplerParams
from emergence.sampling.sampler_module import SGLDRun


class PowerPotential(nn.Module):
    """L(w) = sum_i w_i^(2 k_i): learning coefficient sum_i 1 / (2 k_i) at w = 0 (n*beta -> inf, gamma = 0)."""

    def __init__(self, powers):
        super().__init__()
        self.powers = torch.tensor(powers, dtype=torch.float64)
        self.w = nn.Parameter(torch.zeros(len(powers), dtype=torch.float64))

    def forward(self):
        return (self.w ** (2 * self.powers)).sum(-1)


class Quadratic(nn.Module):
    """L(w) = 1/2 sum_k h_k w_k^2, regular."""

    def __init__(self, h):
        super().__init__()
        self.h = torch.tensor(h, dtype=torch.float64)
        self.w = nn.Parameter(torch.zeros(len(h), dtype=torch.float64))

    def forward(self):
        return 0.5 * (self.h * self.w ** 2).sum(-1)


def quadratic_llc(h, nbeta: float, gamma: float) -> float:
    """At finite gamma: LLC = 1/2 sum_k n*beta h_k / (n*beta h_k + gamma)."""
    return 0.5 * sum(nbeta * x / (nbeta * x + gamma) for x in h)


class NormalCrossing(nn.Module):
    """L(w) = c w_1^2 w_2^2, singular at w = 0 (learning coefficient 1/2, multiplicity 2)."""

    def __init__(self, c: float):
        super().__init__()
        self.c = c
        self.w = nn.Parameter(torch.zeros(2, dtype=torch.float64))

    def forward(self):
        return self.c * (self.w[..., 0] * self.w[..., 1]) ** 2


def normal_crossing_llc(c: float, nbeta: float, gamma: float) -> float:
    """n*beta E[L] at finite n*beta and gamma, by quadrature on a grid of +-8 prior sd."""
    grid = np.linspace(-8, 8, 2001) / np.sqrt(gamma)
    w1, w2 = np.meshgrid(grid, grid)
    loss = c * (w1 * w2) ** 2
    density = np.exp(-nbeta * loss - gamma / 2 * (w1 ** 2 + w2 ** 2))
    return float(nbeta * (loss * density).sum() / density.sum())


class LinearRegression(nn.Module):
    """Per-sample losses l_i = (y_i - x_i w)^2 / 2 and their mean L, starting at w*."""

    def __init__(self, X: torch.Tensor, y: torch.Tensor, w_star: torch.Tensor):
        super().__init__()
        self.X, self.y = X, y
        self.w = nn.Parameter(w_star.clone())

    def per_sample(self) -> torch.Tensor:
        return 0.5 * (self.y - self.w @ self.X.T) ** 2

    def forward(self):
        return self.per_sample().mean(-1)


def blr_loss_covariance(X: torch.Tensor, y: torch.Tensor, w_star: torch.Tensor, nbeta: float,
                        gamma: float) -> np.ndarray:
    """Gaussian posterior of linear regression (precision n*beta/n X^T X + gamma I):
    Cov(l_i, l_j) = S_ij^2 / 2 + m_i m_j S_ij with S = X Sigma X^T, m = y - X w*."""
    n, d = X.shape
    precision = nbeta / n * X.T @ X + gamma * torch.eye(d, dtype=torch.float64)
    S = X @ torch.linalg.inv(precision) @ X.T
    m = y - X @ w_star
    return (0.5 * S ** 2 + m[:, None] * m[None, :] * S).numpy()


def regression_problem(n: int = 24, d: int = 4, seed: int = 1):
    """(X, y, w*) of a small least-squares problem."""
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d, generator=g, dtype=torch.float64)
    y = X @ torch.randn(d, generator=g, dtype=torch.float64) + 0.7 * torch.randn(n, generator=g, dtype=torch.float64)
    return X, y, torch.linalg.lstsq(X, y).solution


class PotentialRun(SGLDRun):
    """The sampling run of the potential ``model()`` (its loss everywhere: at w*, at the draws and
    along the chains), with every chain's loss in one forward."""

    def __init__(self, model: nn.Module, cfg: SamplerParams, seed: int = 0, observables=None):
        super().__init__(model, cfg, seed, loss_fn=lambda m, _: m(), observables=observables)

    def chain_losses(self, chain_batches) -> torch.Tensor:
        """(chains,) losses: the forward on the rows of the chain state W as a (chains, ...) stack of
        weights; backward adds their gradient to the chains' rows of G. On these tiny models half the
        time of a forward per replica (the observables are still read on each replica)."""
        W = self.chains.W.detach().requires_grad_()
        W.register_hook(self._add_to_chain_gradients)
        losses = functional_call(self.chains.model, {name: W[:, self.chains.slices[name]].view(-1, *p.shape)
                                                     for name, p in self.chains.params.items()}, ())
        if losses.shape != (self.chains.chains,):
            raise ValueError(f"{type(self.chains.model).__name__}.forward gave losses of shape {tuple(losses.shape)} "
                             f"for {self.chains.chains} chains: a potential must broadcast over a leading chains "
                             f"dimension of its weights (index w[..., i], reduce with .sum(-1))")
        return losses

    def _add_to_chain_gradients(self, grad: torch.Tensor) -> None:
        self.chains.G.add_(grad)


def sample_potential(model: nn.Module, cfg: SamplerParams, observables=None, seed: int = 0) -> xr.Dataset:
    """The trace of `cfg.chains` full-batch chains on the potential ``model()``, without the Trainer:
    the pipeline's sampling loop (`SGLDRun.iterate`) with the chains' losses computed at once."""
    run = PotentialRun(model, cfg, seed, observables)
    run.measure_init([None])
    for s in range(cfg.steps):
        run.iterate(s, [None] * cfg.chains)
    return run.to_dataset()
