"""SAE training and the correctness-direction search on a planted feature; density filter,
selection on validation only, bootstrap accounting, and the emergence claims."""
from pathlib import Path

import numpy as np
import pytest
import torch

from emergence.config import load_params
from emergence.sae.directions import bootstrap_metrics, evaluate, problem_splits, search, welch_t
from emergence.sae.sae_module import TensorBatches, dense_latents, expected_density, make_sae, train_sae
from emergence.stages.emergence import NOT_RESOLVED, classify_shape, emergence_step

SAE = load_params(Path(__file__).resolve().parents[1] / "params.yaml").sae
# The pipeline's default SAE settings, with two sizes made small for speed: activations of
# width 32 instead of d_model 128 (so d_sae = expansion x 32) with k scaled by the same 1/4,
# keeping the default expected density k / d_sae, and batches of 256 instead of 1024.
D_IN, BATCH = 32, 256
K = SAE.k * D_IN // 128
PLANTED_RATE, SEPARABILITY = 0.04, 0.9


def planted(n_corpus=30000, n_held=4096, n_pairs=600, n_atoms=64, rate=0.075, seed=0):
    """Sparse codes over a random unit dictionary of `n_atoms` atoms in D_IN dimensions.

    Corpus tokens (SAE training, held-out and density): atom 0 fires on PLANTED_RATE of them.
    Pair samples: atom 0 fires on SEPARABILITY of correct and 1 - SEPARABILITY of buggy samples.
    """
    rng = np.random.default_rng(seed)
    dictionary = rng.normal(size=(n_atoms, D_IN))
    dictionary /= np.linalg.norm(dictionary, axis=1, keepdims=True)

    def tokens(atom0: np.ndarray) -> np.ndarray:
        codes = (rng.random((len(atom0), n_atoms)) < rate) * rng.uniform(1, 2, (len(atom0), n_atoms))
        codes[:, 0] = atom0 * rng.uniform(1.5, 2.5, len(atom0))
        return (codes @ dictionary + 0.01 * rng.normal(size=(len(atom0), D_IN))).astype(np.float32)

    corpus, held = (tokens(rng.random(n) < PLANTED_RATE) for n in (n_corpus, n_held))
    labels = np.r_[np.ones(n_pairs, int), np.zeros(n_pairs, int)]
    fires = np.where(labels == 1, rng.random(2 * n_pairs) < SEPARABILITY, rng.random(2 * n_pairs) < 1 - SEPARABILITY)
    groups = np.r_[np.arange(n_pairs), np.arange(n_pairs)].astype(str)
    return corpus, held, tokens(fires), labels, groups, fires, dictionary[0]


def train_planted(max_steps: int, min_steps: int) -> dict:
    corpus, held, acts, labels, groups, fires, planted_dir = planted()
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)                       # small matrices: one thread is faster, and not slowed by load
    try:
        sae = make_sae(SAE.architecture, D_IN, SAE.expansion * D_IN, SAE.l1, K)
        training = train_sae(sae, TensorBatches(torch.from_numpy(corpus), BATCH, 0), torch.from_numpy(held), SAE.lr,
                             max_steps, min_steps, SAE.eval_every, SAE.plateau_window, SAE.plateau_tol)
    finally:
        torch.set_num_threads(threads)
    with torch.no_grad():
        latents = sae.encode(torch.from_numpy(acts)).numpy()
        held_feats = sae.encode(torch.from_numpy(held)).numpy()
    return dict(sae=sae, training=training, acts=acts, latents=latents, held_feats=held_feats, labels=labels,
                groups=groups, fires=fires, planted_dir=planted_dir)


def recovery(run: dict, dense: np.ndarray) -> tuple[dict, float, float]:
    """The search's result, the |cosine| of its t_max latent's decoder row with the planted atom, its held-out accuracy."""
    out = evaluate(run["latents"], run["acts"], np.full(len(run["labels"]), 10), run["labels"], run["groups"], dense,
                   seed=0, n_boot=50)
    w = run["sae"].W_dec.detach().numpy()[out["search"].positive]
    cosine = float(abs(w @ run["planted_dir"]) / np.linalg.norm(w))
    return out, cosine, out["table"]["latent_t_max"]["accuracy"]["value"]


@pytest.fixture(scope="module")
def trained():
    return train_planted(SAE.max_steps, SAE.min_steps)


def test_planted_feature_is_found_with_the_default_settings(trained):
    assert trained["training"]["plateaued"] and trained["training"]["train_steps"] < SAE.max_steps
    dense, threshold = dense_latents(trained["sae"], trained["held_feats"], SAE.dense_factor)
    out, cosine, acc = recovery(trained, dense)
    oracle = ((trained["fires"] == trained["labels"])[out["splits"].held_out]).mean()  # the planted feature itself
    print(f"default settings: {trained['training']}, cosine {cosine:.3f}, accuracy {acc:.3f} (planted {oracle:.3f})")
    assert cosine >= 0.9
    density = (trained["held_feats"][:, out["search"].positive] > 0).mean()
    assert 0.02 < density < threshold              # a normal TopK density, above the old fixed 2% cut
    assert acc >= oracle - 0.07
    assert out["table"]["length_only"]["accuracy"]["value"] < 0.6


def test_old_fixed_filter_and_300_steps_miss_it():
    """The planted case is one the former defaults (300 steps, latents on > 2% of tokens dropped) fail on."""
    run = train_planted(300, 300)
    _, cosine, acc = recovery(run, (run["held_feats"] > 0).mean(0) > 0.02)
    print(f"old settings: {run['training']}, cosine {cosine:.3f}, accuracy {acc:.3f}")
    assert cosine < 0.9 and acc < 0.6


def test_shuffled_labels_give_chance_accuracy(trained):
    latents, labels = trained["latents"], trained["labels"]
    shuffled = np.random.default_rng(1).permutation(labels)
    out = evaluate(latents, trained["acts"], np.full(len(labels), 10), shuffled, trained["groups"],
                   np.zeros(latents.shape[1], bool), seed=0, n_boot=50)
    for name in ("latent_t_max", "top_k", "logistic_probe"):
        assert abs(out["table"][name]["accuracy"]["value"] - 0.5) < 0.06


def test_expected_density_is_k_over_d_sae_for_topk_and_mean_l0_for_standard():
    topk = make_sae("topk", 8, 64, k=4)
    feats = np.zeros((10, 64))
    feats[:, :3] = 1.0
    assert expected_density(topk, feats) == pytest.approx(4 / 64)
    assert expected_density(make_sae("standard", 8, 64), feats) == pytest.approx(3 / 64)
    dense, threshold = dense_latents(topk, feats, 4.0)
    assert threshold == pytest.approx(0.25) and dense[:3].all() and not dense[3:].any()


def correlated_with_dense(seed=0, n_pairs=200, d=20):
    """Latents where latent 0 separates the labels perfectly and latent 1 weakly; the rest are noise."""
    rng = np.random.default_rng(seed)
    labels = np.r_[np.ones(n_pairs, int), np.zeros(n_pairs, int)]
    latents = rng.exponential(1.0, (2 * n_pairs, d)) * (rng.random((2 * n_pairs, d)) < 0.3)
    latents[:, 0] = labels * 5.0 + rng.random(2 * n_pairs)
    latents[:, 1] += labels * (rng.random(2 * n_pairs) < 0.6)
    groups = np.r_[np.arange(n_pairs), np.arange(n_pairs)].astype(str)
    return latents, labels, groups


def test_dense_latent_is_never_selected():
    latents, labels, groups = correlated_with_dense()
    dense = np.zeros(latents.shape[1], bool)
    assert search(latents, labels, ~dense, 5).positive == 0  # the filter is what keeps it out
    dense[0] = True
    for allowed_t_sign in (1, -1):                 # also when every allowed latent has t < 0
        lat = latents if allowed_t_sign == 1 else np.c_[latents[:, :1], latents[:, 1:] * (labels[:, None] == 0)]
        out = evaluate(lat, lat, np.full(len(labels), 10), labels, groups, dense, seed=0, k=25, n_boot=20)
        found = out["search"]
        chosen = {found.positive, found.negative, found.steering, out["random_latent"], *found.top_k.tolist()}
        assert 0 not in chosen and len(found.top_k) == latents.shape[1] - 1
    with pytest.raises(ValueError, match="dense_factor"):
        search(latents, labels, np.zeros(latents.shape[1], bool), 5)


def test_choices_are_made_on_train_and_validation_only():
    latents, labels, groups = correlated_with_dense(seed=1)
    latents = latents[:, 1:]                       # no perfect latent: choices are not trivial
    base = evaluate(latents, latents, np.full(len(labels), 10), labels, groups, np.zeros(latents.shape[1], bool),
                    seed=0, n_boot=20)
    test = base["splits"].held_out
    permuted = labels.copy()
    permuted[test] = np.random.default_rng(0).permutation(labels[test])
    out = evaluate(latents, latents, np.full(len(labels), 10), permuted, groups, np.zeros(latents.shape[1], bool),
                   seed=0, n_boot=20)
    a, b = base["search"], out["search"]
    assert (a.positive, a.negative, a.steering, a.top_k.tolist()) == (b.positive, b.negative, b.steering, b.top_k.tolist())
    assert out["validation"] == base["validation"] and out["selected"] == base["selected"]
    auroc = [[t["auroc"]["value"] for t in r["table"].values()] for r in (base, out)]
    assert auroc[0] != auroc[1]                    # only the scoring saw the held-out labels


def test_bootstrap_counts_single_class_resamples():
    labels = np.array([1, 1, 0, 0, 1, 1])          # three problems, each of one class
    groups = np.array(["a", "a", "b", "b", "c", "c"])
    scores = np.array([0.9, 0.8, 0.1, 0.2, 0.7, 0.6])
    out = bootstrap_metrics(scores, labels, groups, 0.5, n_boot=200, seed=0)
    skipped = out["accuracy"]["bootstrap_skipped"]
    assert 40 < skipped < 95                       # P(single class) = (2/3)^3 + (1/3)^3 = 1/3
    assert out["auroc"]["bootstrap_skipped"] == skipped and np.isfinite(out["accuracy"]["lo"])


def test_training_records_the_step_cap():
    torch.manual_seed(0)
    acts = torch.randn(2048, 8)
    sae = make_sae("topk", 8, 32, k=2)
    info = train_sae(sae, TensorBatches(acts, 128, 0), acts[:256], 1e-3, max_steps=12, min_steps=12, eval_every=4,
                     window=1, tol=0.0)
    assert info == {**info, "train_steps": 12, "plateaued": False}


def test_emergence_claims_need_separated_intervals():
    steps = [0, 10, 20, 30]
    base_hi = [0.6, 0.6, 0.6, 0.6]
    # a sudden, resolved rise
    v, lo, hi = [0.5, 0.52, 0.85, 0.87], [0.45, 0.47, 0.8, 0.82], [0.55, 0.57, 0.9, 0.92]
    assert emergence_step(steps, lo, base_hi) == 20 and classify_shape(v, lo, hi) == "sudden"
    # a gradual rise through a resolved intermediate level
    v, lo, hi = [0.5, 0.6, 0.7, 0.8], [0.47, 0.57, 0.67, 0.77], [0.53, 0.63, 0.73, 0.83]
    assert emergence_step(steps, lo, base_hi) == 20 and classify_shape(v, lo, hi) == "gradual"
    # the same points with wide intervals: nothing is claimed
    lo, hi = [x - 0.25 for x in v], [x + 0.25 for x in v]
    assert emergence_step(steps, lo, base_hi) == NOT_RESOLVED and classify_shape(v, lo, hi) == NOT_RESOLVED
    # a big jump whose intervals overlap is not called sudden
    v, lo, hi = [0.5, 0.52, 0.85, 0.87], [0.45, 0.47, 0.5, 0.82], [0.55, 0.6, 0.9, 0.92]
    assert classify_shape(v, lo, hi) == NOT_RESOLVED


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
