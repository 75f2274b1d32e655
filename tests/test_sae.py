"""SAE training and the correctness-direction search on a planted feature; leakage control."""
import numpy as np
import pytest
import torch

from emergence.sae.directions import evaluate, problem_splits, welch_t
from emergence.sae.sae_module import TensorBatches, make_sae, train_sae


def planted(n_pairs=1500, d=32, m=64, seed=0):
    """Sparse codes over a random unit dictionary; atom 0 fires on 90% of correct and 10% of buggy samples."""
    rng = np.random.default_rng(seed)
    D = rng.normal(size=(m, d))
    D /= np.linalg.norm(D, axis=1, keepdims=True)
    n = 2 * n_pairs
    labels = np.r_[np.ones(n_pairs, int), np.zeros(n_pairs, int)]
    codes = (rng.random((n, m)) < 0.06) * rng.uniform(1, 2, (n, m))
    fires = np.where(labels == 1, rng.random(n) < 0.9, rng.random(n) < 0.1)
    codes[:, 0] = fires * rng.uniform(1.5, 2.5, n)
    acts = codes @ D + 0.01 * rng.normal(size=(n, d))
    groups = np.r_[np.arange(n_pairs), np.arange(n_pairs)].astype(str)
    return acts.astype(np.float32), labels, groups, D[0]


@pytest.fixture(scope="module")
def trained():
    acts, labels, groups, planted_dir = planted()
    torch.manual_seed(0)
    sae = make_sae("topk", d_in=acts.shape[1], d_sae=128, k=6)
    train_sae(sae, TensorBatches(torch.from_numpy(acts), 256, 0), steps=1500, lr=3e-3)
    with torch.no_grad():
        latents = sae.encode(torch.from_numpy(acts)).numpy()
    return sae, acts, latents, labels, groups, planted_dir


def test_planted_direction_is_recovered(trained):
    sae, acts, latents, labels, groups, planted_dir = trained
    dense = np.zeros(latents.shape[1], bool)
    out = evaluate(latents, acts, np.full(len(labels), 10), labels, groups, dense, seed=0, n_boot=50)
    w = sae.W_dec.detach().numpy()[out["search"].positive]
    cosine = abs(w @ planted_dir) / np.linalg.norm(w)
    assert cosine >= 0.9
    acc = out["table"]["latent_t_max"]["accuracy"]["value"]
    assert acc == pytest.approx(0.9, abs=0.04)  # the planted separability
    assert out["table"]["logistic_probe"]["accuracy"]["value"] >= acc - 0.03
    assert out["table"]["length_only"]["accuracy"]["value"] < 0.6


def test_shuffled_labels_give_chance_accuracy(trained):
    _, acts, latents, labels, groups, _ = trained
    shuffled = np.random.default_rng(1).permutation(labels)
    out = evaluate(latents, acts, np.full(len(labels), 10), shuffled, groups,
                   np.zeros(latents.shape[1], bool), seed=0, n_boot=50)
    for name in ("latent_t_max", "top_k", "logistic_probe"):
        m = out["table"][name]["accuracy"]
        assert abs(m["value"] - 0.5) < 0.06


def test_splits_are_by_problem():
    groups = np.repeat(np.arange(50).astype(str), 2)
    sp = problem_splits(groups, seed=0)
    sets = [set(groups[i]) for i in (sp.search, sp.threshold, sp.held_out)]
    assert not (sets[0] & sets[1] or sets[0] & sets[2] or sets[1] & sets[2])
    assert sum(map(len, sets)) == 50 and 18 <= len(sets[2]) <= 22


def test_welch_t_known_value():
    x = np.array([[1.0], [2.0], [3.0]])
    y = np.array([[0.0], [0.0], [0.0], [0.0]])
    assert welch_t(x, y)[0] == pytest.approx(2.0 / np.sqrt(1.0 / 3))
