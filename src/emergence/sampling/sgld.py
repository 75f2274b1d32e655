"""RMSProp-preconditioned SGLD as a torch optimizer (Lee et al. 2025, arXiv 2510.12071).

    w <- w - (eps_hat / 2) [ nbeta * grad L_m(w) + gamma (w - w*) ] + N(0, eps_hat)
    eps_hat = eps / (sqrt(V) + alpha),   V <- b V + (1 - b) grad L_m(w)^2

with L_m the mean loss of a minibatch, w* the weights at construction (the checkpoint)
and gamma the localization strength (Lau et al. 2023, arXiv 2308.12108).

The preconditioner V is adapted for the first ``adapt_steps`` steps (the burn-in; with
Adam's bias correction V / (1 - b^t)) and then frozen. A constant preconditioner gives an
exact preconditioned Langevin diffusion in the small-step limit, so the draws target the
tempered posterior. With ``adapt_steps=None`` V is re-estimated at every step, as in Lee
et al.: the preconditioner then depends on w and the update lacks the correction term a
state-dependent preconditioner needs (Li et al. 2016, arXiv 1512.07666, the Gamma term),
so the chain's stationary law is not the posterior (the LLC and BIF come out too large).
With ``preconditioned=False`` it is plain SGLD (eps_hat = eps).

With ``exact_localization`` the linear pull gamma (w - w*) is integrated exactly over the
step (an exponential integrator, the gradient held fixed), so the localization adds no
discretisation error: with gamma = 1e4 and eps_hat = 1e-5 an Euler step alone inflates the
posterior variance by ~2.5 %. Otherwise the update is the Euler step above, as in Lee et al.

An optional 0/1 ``mask`` of the parameter's shape restricts sampling to a subset of the
weights (the rest stay at w*), as needed for refined LLCs and susceptibilities. The whole
chain state can be one (chains, P) tensor; with one generator per row
(``generator=[g_0, g_1, ...]``) each chain's noise depends only on its own seed, so chains
give the same draws whichever device or process holds them.
"""
from __future__ import annotations

import torch


class RMSPropSGLD(torch.optim.Optimizer):
    def __init__(self, params, lr: float, nbeta: float, localization: float = 0.0,
                 preconditioned: bool = True, alpha: float = 0.1, beta: float = 0.99,
                 adapt_steps: int | None = None, exact_localization: bool = True, mask: torch.Tensor | None = None,
                 generator: torch.Generator | list[torch.Generator] | None = None):
        if lr <= 0 or nbeta <= 0 or localization < 0:
            raise ValueError(f"need lr > 0, nbeta > 0, localization >= 0; got {lr}, {nbeta}, {localization}")
        if adapt_steps is not None and adapt_steps < 1:
            raise ValueError(f"adapt_steps must be >= 1 (the burn-in that estimates V) or None; got {adapt_steps}")
        defaults = dict(lr=lr, nbeta=nbeta, localization=localization, preconditioned=preconditioned,
                        alpha=alpha, beta=beta, adapt_steps=adapt_steps,
                        exact_localization=exact_localization)
        super().__init__(params, defaults)
        self.mask = mask
        self.generator = generator
        for group in self.param_groups:
            for p in group["params"]:
                self.state[p]["anchor"] = p.detach().clone()
                if preconditioned:
                    self.state[p]["square_avg"] = torch.zeros_like(p)
                    self.state[p]["steps"] = 0

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                keep, force, spread = state.get("coef") or self._coefficients(state, p, group)
                anchor = state["anchor"]  # w' = w* + keep (w - w*) - force grad + spread xi, in place
                p.sub_(anchor).mul_(keep).add_(anchor)
                _fma(p, p.grad, -force)
                _fma(p, self._noise(p, state), spread)
        return loss

    def _coefficients(self, state: dict, p: torch.Tensor, group: dict) -> tuple:
        """(keep, force, spread) of the update w' = w* + keep (w - w*) - force grad + spread xi, with h = eps_hat.
        Exact localization: keep = e^{-g h/2}, force = (1 - keep) nbeta / g, spread = sqrt((1 - keep^2) / g);
        Euler: keep = 1 - g h / 2, force = nbeta h / 2, spread = sqrt(h). force and spread are zero outside the
        mask. Cached once eps_hat is constant (plain SGLD, or V frozen after the burn-in; V is then freed)."""
        lr, nbeta, gamma = group["lr"], group["nbeta"], group["localization"]
        if group["preconditioned"]:
            h = lr / (self._second_moment(state, p.grad, group).sqrt() + group["alpha"])
        else:
            h = torch.tensor(lr, dtype=p.dtype, device=p.device)
        if gamma and group["exact_localization"]:
            keep = torch.exp(-0.5 * gamma * h)
            force, spread = (1 - keep) * (nbeta / gamma), ((1 - keep ** 2) / gamma).sqrt()
        else:
            keep, force, spread = 1 - 0.5 * gamma * h, 0.5 * nbeta * h, h.sqrt()
        if self.mask is not None:
            force, spread = force * self.mask, spread * self.mask
        coef = [keep, force, spread]
        if not group["preconditioned"]:
            coef = [c if c.dim() else float(c) for c in coef]
            state["coef"] = coef
        elif group["adapt_steps"] is not None and state["steps"] >= group["adapt_steps"]:
            state["coef"] = coef
            del state["square_avg"]
        return coef

    @staticmethod
    def _second_moment(state: dict, grad: torch.Tensor, group: dict) -> torch.Tensor:
        """V for this step: updated while adapting (every step when adapt_steps is None), then frozen."""
        v, beta, adapt = state["square_avg"], group["beta"], group["adapt_steps"]
        if adapt is None:
            return v.mul_(beta).addcmul_(grad, grad, value=1 - beta)
        if state["steps"] < adapt:
            state["steps"] += 1
            v.mul_(beta).addcmul_(grad, grad, value=1 - beta)
            if state["steps"] == adapt:  # freeze the bias-corrected estimate
                v.div_(1 - beta ** adapt)
                return v
            return v / (1 - beta ** state["steps"])
        return v

    def _noise(self, p: torch.Tensor, state: dict) -> torch.Tensor:
        """xi ~ N(0, I) in a buffer kept across steps; one generator per chain row when given a list."""
        noise = state.get("noise")
        if noise is None:
            noise = state["noise"] = torch.empty_like(p)
        if not isinstance(self.generator, (list, tuple)):
            return noise.normal_(generator=self.generator)
        for row, g in zip(noise, self.generator):
            row.normal_(generator=g)
        return noise


def _fma(out: torch.Tensor, x: torch.Tensor, coef) -> torch.Tensor:
    """out += coef * x, for a tensor or a number coef."""
    return out.addcmul_(x, coef) if torch.is_tensor(coef) else out.add_(x, alpha=coef)
