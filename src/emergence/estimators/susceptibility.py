"""Susceptibilities of components to data shifts (Baker et al. 2025, arXiv 2504.18274).

    chi_ij = - Cov_w( phi_i(w), Delta_j(w) ),    Delta_j(w) = l_j(w) - l_ref(w)

over the SGLD draws around a checkpoint (chains pooled; the linear response of E[phi_i]
to mixing a fraction h of shift j into the data is d/dh = nbeta chi_ij, so chi is the
response per unit of nbeta): phi_i is a component-localised
observable, l_j the mean loss on the data of shift j (correct code, buggy code, general
code) and l_ref the loss on the sampling distribution, so Delta_j is the shift expressed
as a difference from it. The paper's phi_V for a weight component V is the sampling
loss L(w) under the posterior restricted to V's weights (the rest fixed at w*), so
each component has its own chains; output norms of heads/MLPs and SAE feature
activations are observables of the whole-model posterior.

Per-sequence profiles (one shift per observable sequence) feed the embryology view,
and per-token attributions chi_{i,t} = -Cov(phi_i, l_t - l_ref) split a sequence's
entry into its tokens (the mean over its scored tokens is the sequence's entry).
Intervals come from a blocked bootstrap: each chain is cut into contiguous blocks of
draws, which are resampled with replacement (chain-level when there is one block).
"""
from __future__ import annotations

import numpy as np

from emergence.estimators.diagnostics import block_resample
from emergence.estimators.llc import check_finite


def _pool(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x.reshape(-1, x.shape[-1])


def neg_cov(phi: np.ndarray, delta: np.ndarray) -> np.ndarray:
    """(m, J) -Cov between columns of phi (S, m) and delta (S, J) over the S samples."""
    phi = phi - phi.mean(0)
    delta = delta - delta.mean(0)
    return -(phi.T @ delta) / (len(phi) - 1)


def shift_deltas(obs: np.ndarray, labels: np.ndarray, shifts: list[str], reference: str) -> np.ndarray:
    """(chain, draw, J): mean loss on each shift's sequences minus the mean loss on the reference."""
    ref = obs[..., labels == reference].mean(-1)
    return np.stack([obs[..., labels == j].mean(-1) - ref for j in shifts], axis=-1)


def susceptibility_matrix(component_obs: np.ndarray, obs: np.ndarray, labels: np.ndarray,
                          shifts: list[str], reference: str = "sampling") -> np.ndarray:
    """(components, shifts) chi from draws: component_obs (C, D, m), obs (C, D, n)."""
    check_finite(np.asarray(component_obs).reshape(len(component_obs), -1), "susceptibility")
    check_finite(np.asarray(obs).reshape(len(obs), -1), "susceptibility")
    return neg_cov(_pool(component_obs), _pool(shift_deltas(obs, labels, shifts, reference)))


def sequence_profiles(component_obs: np.ndarray, obs: np.ndarray, labels: np.ndarray,
                      reference: str = "sampling") -> np.ndarray:
    """(components, sequences) chi of every component to every single observable sequence
    (each sequence's loss minus the reference loss): the component's response profile."""
    ref = obs[..., labels == reference].mean(-1, keepdims=True)
    keep = labels != reference
    return neg_cov(_pool(component_obs), _pool((obs - ref)[..., keep]))


def restricted_loss(obs: np.ndarray, labels: np.ndarray, reference: str = "sampling") -> np.ndarray:
    """(C, D, 1) phi_V = the sampling loss at each draw of chains restricted to V's weights."""
    return obs[..., labels == reference].mean(-1)[..., None]


def token_attribution(component_obs: np.ndarray, token_obs: np.ndarray, obs: np.ndarray,
                      labels: np.ndarray, reference: str = "sampling") -> np.ndarray:
    """(components, tokens) chi_{i,t} = -Cov(phi_i, l_t - l_ref) of every scored token t."""
    ref = obs[..., labels == reference].mean(-1, keepdims=True)
    return neg_cov(_pool(component_obs), _pool(token_obs - ref))


def bootstrap_interval(component_obs: np.ndarray, obs: np.ndarray, labels: np.ndarray, shifts: list[str],
                       reference: str = "sampling", blocks: int = 4, n_boot: int = 300, seed: int = 0,
                       level: float = 0.9) -> tuple[np.ndarray, np.ndarray]:
    """(lo, hi) of chi from resampling contiguous blocks of draws of every chain."""
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(n_boot):
        c, d = block_resample(*obs.shape[:2], blocks, rng)
        draws.append(susceptibility_matrix(component_obs[c, d][None], obs[c, d][None], labels, shifts, reference))
    q = (1 - level) / 2
    return np.quantile(draws, q, axis=0), np.quantile(draws, 1 - q, axis=0)


def opposite_responses(chi: np.ndarray, lo: np.ndarray, hi: np.ndarray, names: list[str],
                       a: int = 0, b: int = 1) -> list[dict]:
    """Components whose chi to shift a and to shift b have opposite signs, strongest first.

    Strength is the smaller of the two magnitudes; `significant` when both intervals exclude 0.
    The ranking compares magnitudes, so the rows must share one observable unit.
    """
    out = []
    for i, name in enumerate(names):
        if np.sign(chi[i, a]) * np.sign(chi[i, b]) < 0:
            sig = bool(lo[i, a] * hi[i, a] > 0 and lo[i, b] * hi[i, b] > 0)
            out.append({"component": name, "chi_a": float(chi[i, a]), "chi_b": float(chi[i, b]),
                        "strength": float(min(abs(chi[i, a]), abs(chi[i, b]))), "significant": sig})
    return sorted(out, key=lambda r: -r["strength"])


def principal_directions(chi: np.ndarray) -> dict:
    """SVD of the (components x shifts) matrix: singular values, component and shift loadings.
    Its rows must share one observable unit (chi scales with phi's unit)."""
    u, s, vt = np.linalg.svd(chi, full_matrices=False)
    return {"singular_values": s.tolist(), "component_loadings": u.tolist(), "shift_loadings": vt.tolist()}
