"""Mechanistic probes with known answers: a head that carries the whole signal, the logit
lens at the last layer, and a trajectory with a known turn."""
import numpy as np
import pytest
import torch
from transformer_lens import HookedTransformer, HookedTransformerConfig

from emergence.analysis.patching import (PatchPair, logit_lens, patch_effects,
                                         skipped_pairs, total_effect)
from emergence.analysis.trajectory import pca, turning_points
from emergence.models.components import hooks


@pytest.fixture(scope="module")
def signal_head_model():
    """One attention-only layer, uniform attention; head 0 copies token identity to the output,
    head 1 writes nothing. Predictions after a changed token depend on it only through head 0."""
    cfg = HookedTransformerConfig(n_layers=1, d_model=8, d_head=4, n_heads=2, d_vocab=4, n_ctx=16,
                                  attn_only=True, normalization_type=None, act_fn="relu")
    model = HookedTransformer(cfg)
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        model.embed.W_E[:, :4] = torch.eye(4)
        model.blocks[0].attn.W_V[:, :4, :] = torch.eye(4)
        model.blocks[0].attn.W_O[0] = torch.cat([torch.zeros(4, 4), torch.eye(4)], 1)
        model.unembed.W_U[4:, :] = 10 * torch.eye(4)
    return model.eval()


def test_patching_finds_the_head_that_carries_the_signal(signal_head_model):
    correct = torch.tensor([0, 1, 2, 3, 0, 1, 2, 3, 0, 1])
    buggy = correct.clone()
    buggy[3] = 2
    pair = PatchPair(correct, buggy, 3, 4)
    comps = hooks(1, 2)
    effects = patch_effects(signal_head_model, [pair], comps)[0]      # (components, positions)
    names = list(comps)
    total = dict(zip(names, np.nansum(effects, axis=1)))
    assert total["L0H0"] == pytest.approx(1.0, abs=1e-4)
    assert abs(total["L0H1"]) < 1e-6 and abs(total["L0.mlp"]) < 1e-6
    assert total["L0.resid"] == pytest.approx(1.0, abs=1e-4)
    assert total["L0.even_heads"] == pytest.approx(1.0, abs=1e-4) and abs(total["L0.odd_heads"]) < 1e-6
    assert abs(effects[names.index("L0H0"), 0]) < 1e-6  # positions before the downstream tokens
    itself = patch_effects(signal_head_model, [pair], comps, source="buggy")[0]
    np.testing.assert_allclose(np.nan_to_num(itself), 0.0, atol=1e-7)


def test_small_gap_pairs_are_counted_and_empty_position_groups_add_nothing(signal_head_model):
    correct = torch.tensor([0, 1, 2, 3, 0, 1, 2, 3, 0, 1])
    buggy = correct.clone()
    buggy[3] = 2
    pair = PatchPair(correct, buggy, 3, 4)
    comps = hooks(1, 2)
    effects = patch_effects(signal_head_model, [pair, pair], comps)
    assert not skipped_pairs(effects).any()
    skipped = patch_effects(signal_head_model, [pair], comps, min_gap=1e6)   # gap below min_gap: skipped
    assert skipped_pairs(skipped).tolist() == [True]
    both = np.concatenate([effects[:1], skipped])
    np.testing.assert_array_equal(skipped_pairs(both), [False, True])
    totals = total_effect(both)
    assert np.isnan(totals[1]).all()
    effects[0, :, 2] = np.nan                                                # a position group with no positions
    np.testing.assert_allclose(total_effect(effects[:1])[0], effects[0, :, :2].sum(-1))


def test_logit_lens_last_layer_equals_the_model(tiny_corpus):
    from emergence.models.gpt import GPT, GPTConfig
    from emergence.models.hooked import gpt_to_hooked
    from emergence.models.scoring import load_pair_sequences, sequence_losses
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=300, n_ctx=64, n_layer=2, n_head=2, d_model=32, d_mlp=64)).eval()
    seqs = load_pair_sequences(tiny_corpus / "pairs_tokens.jsonl", 64, n_pairs=4)
    lens = logit_lens(gpt_to_hooked(model), seqs.ids, seqs.targets, seqs.mask, 0.5)  # a few sequences per batch
    assert lens.shape == (2, len(seqs))
    np.testing.assert_allclose(lens[-1], sequence_losses(model, seqs, 64).numpy(), rtol=1e-4)


def test_trajectory_turn_is_found():
    rng = np.random.default_rng(0)
    basis = np.linalg.qr(rng.normal(size=(200, 2)))[0].T              # two orthonormal directions in R^200
    path = [i * basis[0] for i in range(6)] + [5 * basis[0] + j * basis[1] for j in range(1, 6)]
    points = np.array(path) + 0.01 * rng.normal(size=(11, 200))
    proj, _, ratio = pca(points, 4)
    assert ratio[:2].sum() > 0.99
    assert turning_points(proj[:, :2]) == [5]


def test_a_trajectory_of_fewer_points_than_components_pads_with_zeros():
    """One or two checkpoints (a Pythia study of one revision) span fewer directions than asked for:
    the missing components are zero, so the figures and tables keep their shape."""
    one, _, ratio = pca(np.ones((1, 30)), 4)
    assert one.shape == (1, 4) and not one.any() and ratio.shape == (4,)
    two, comps, ratio = pca(np.array([[0.0, 0.0], [3.0, 4.0]]), 4)
    assert two.shape == (2, 4) and np.allclose(np.abs(two[:, 0]), 2.5) and np.allclose(two[:, 1:], 0)
    assert comps.shape == (4, 2) and np.isclose(ratio[0], 1.0)
