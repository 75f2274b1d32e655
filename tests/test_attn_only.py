"""Attention-only GPT: transformer-lens conversion, components, observables, aligned windows, params."""
import numpy as np
import pytest
import torch

from emergence.config import ConfigError, load_params
from emergence.models.checkpoints import load_checkpoint, save_checkpoint
from emergence.models.gpt import GPT, GPTConfig
from emergence.models.hooked import gpt_to_hooked
from emergence.data.windows import TokenWindows, fixed_windows
from emergence.models.components import Components
from emergence.sampling.chains import FlatChains


def attn_only_gpt(bias: bool = True) -> GPT:
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=7, n_ctx=16, n_layer=2, n_head=2, d_model=16, d_mlp=32, bias=bias,
                          attn_only=True)).eval()
    with torch.no_grad():  # non-trivial layer norms and biases, so a mis-mapped weight shows
        for name, p in model.named_parameters():
            if name.endswith("bias") or "ln_" in name:
                p.add_(0.1 * torch.randn_like(p))
    return model


@pytest.mark.parametrize("bias", [True, False])
def test_attn_only_gpt_converts_with_matching_logits(bias):
    model = attn_only_gpt(bias)
    assert all(b.mlp is None and b.ln_2 is None for b in model.transformer.h)
    assert not any(".mlp." in n or "ln_2" in n for n in model.state_dict())
    hooked = gpt_to_hooked(model)
    assert hooked.cfg.attn_only
    x = torch.randint(0, 7, (3, 16))
    torch.testing.assert_close(hooked(x), model(x), atol=1e-5, rtol=1e-5)


def test_attn_only_checkpoint_roundtrip(tmp_path):
    model = attn_only_gpt()
    save_checkpoint(tmp_path / "s.pt", model, 3)
    loaded, meta = load_checkpoint(tmp_path / "s.pt")
    assert loaded.cfg.attn_only and meta["step"] == 3
    x = torch.randint(0, 7, (2, 16))
    torch.testing.assert_close(loaded(x), model(x))


def test_attn_only_components_are_heads_only():
    model = attn_only_gpt()
    assert Components(model).names() == ["L0H0", "L0H1", "L1H0", "L1H1"]
    with pytest.raises(ValueError, match="no mlp in layer 0"):
        Components(model).weights("L0.mlp")
    chains = FlatChains(model, chains=2)
    assert chains.mask_for(["L1"]).sum() > chains.mask_for(["L1H0"]).sum() > 0
    with Components(model).output_norms() as norms:
        model(torch.randint(0, 7, (2, 16)))
    assert norms().shape == (4,) and bool((norms() > 0).all())


def test_aligned_windows_start_at_sequence_boundaries(tmp_path):
    n_ctx, n_seq = 5, 40
    tokens = np.repeat(np.arange(n_seq, dtype=np.uint16), n_ctx + 1)  # sequence s is n_ctx + 1 copies of s
    tokens.tofile(tmp_path / "t.bin")
    x, y = TokenWindows(tmp_path / "t.bin", n_ctx, batch_size=64, seed=0, aligned=True).batch(3)
    full = torch.cat([x, y[:, -1:]], dim=1)
    assert bool((full == full[:, :1]).all())  # every window is one whole sequence
    fixed = fixed_windows(tmp_path / "t.bin", n_ctx, count=10, aligned=True).tensors[0]
    assert bool((fixed == fixed[:, :1]).all()) and fixed[-1, 0] == n_seq - 1
    x, _ = TokenWindows(tmp_path / "t.bin", n_ctx, batch_size=64, seed=0).batch(3)
    assert not bool((x == x[:, :1]).all())  # unaligned windows straddle sequences


def test_calibration_params_validated(tmp_path):
    p = load_params("params.yaml")
    steps = p.calibration.checkpoint_steps
    assert steps[0] == 0 and steps[-1] == p.calibration.max_steps
    assert set(np.diff(steps[:-1])) == {p.calibration.checkpoint_every}
    with pytest.raises(ConfigError, match="calibration.k"):
        load_params("params.yaml", ["calibration.k=1"])
    with pytest.raises(ConfigError, match="calibration.monitor_sequences"):
        load_params("params.yaml", ["calibration.monitor_sequences=100000"])
