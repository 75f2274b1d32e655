"""RMSProp-preconditioned SGLD as a torch optimizer (Lee et al. 2025, arXiv 2510.12071).

    w <- w - (eps_hat / 2) [ nbeta * grad L_m(w) + gamma (w - w*) ] + N(0, eps_hat)
    eps_hat = eps / (sqrt(V) + alpha),   V <- b V + (1 - b) grad L_m(w)^2

with L_m the mean loss of a minibatch, w* the weights at construction (the checkpoint)
and gamma the localization strength (Lau et al. 2023, arXiv 2308.12108). With
``preconditioned=False`` it is plain SGLD (eps_hat = eps). An optional 0/1 ``mask`` of
the parameter's shape restricts sampling to a subset of the weights (the rest stay at
w*), as needed for refined LLCs and susceptibilities. The whole chain state can be one
(chains, P) tensor; with one generator per row (``generator=[g_0, g_1, ...]``) each
chain's noise depends only on its own seed, so chains give the same draws whichever
device or process holds them.
"""
from __future__ import annotations

import torch


class RMSPropSGLD(torch.optim.Optimizer):
    def __init__(self, params, lr: float, nbeta: float, localization: float = 0.0,
                 preconditioned: bool = True, alpha: float = 0.1, beta: float = 0.99,
                 mask: torch.Tensor | None = None,
                 generator: torch.Generator | list[torch.Generator] | None = None):
        if lr <= 0 or nbeta <= 0 or localization < 0:
            raise ValueError(f"need lr > 0, nbeta > 0, localization >= 0; got {lr}, {nbeta}, {localization}")
        defaults = dict(lr=lr, nbeta=nbeta, localization=localization, preconditioned=preconditioned,
                        alpha=alpha, beta=beta)
        super().__init__(params, defaults)
        self.mask = mask
        self.generator = generator
        for group in self.param_groups:
            for p in group["params"]:
                self.state[p]["anchor"] = p.detach().clone()
                if preconditioned:
                    self.state[p]["square_avg"] = torch.zeros_like(p)

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, nbeta, gamma = group["lr"], group["nbeta"], group["localization"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                drift = p.grad.mul(nbeta)
                if gamma:
                    drift.add_(p - state["anchor"], alpha=gamma)
                noise = self._noise(p)
                if group["preconditioned"]:
                    v = state["square_avg"]
                    v.mul_(group["beta"]).addcmul_(p.grad, p.grad, value=1 - group["beta"])
                    eps_hat = lr / (v.sqrt() + group["alpha"])
                    update = drift.mul_(eps_hat).mul_(-0.5).add_(noise.mul_(eps_hat.sqrt_()))
                else:
                    update = drift.mul_(-0.5 * lr).add_(noise, alpha=lr ** 0.5)
                if self.mask is not None:
                    update.mul_(self.mask)
                p.add_(update)
        return loss

    def _noise(self, p: torch.Tensor) -> torch.Tensor:
        if not isinstance(self.generator, (list, tuple)):
            return torch.randn(p.shape, generator=self.generator, dtype=p.dtype, device=p.device)
        noise = torch.empty_like(p)
        for row, g in zip(noise, self.generator):
            row.normal_(generator=g)
        return noise
