"""The device section: one place for where the work runs, its precision and its inference budget."""
import platform
import re
from pathlib import Path

import pytest
import torch

from emergence.config import ConfigError, DeviceParams
from emergence.device import batch_for, inference, shape, torch_device, trainer_args
from emergence.models.gpt import GPT, GPTConfig
from emergence.models.hooked import gpt_to_hooked

SRC = Path(__file__).resolve().parents[1] / "src" / "emergence"


def test_no_device_is_pinned_outside_the_device_section():
    """Every stage takes its device from params.device: no "cpu" (or "cuda") literal in the code
    except the config's defaults and `emergence.device` itself."""
    pinned = [f"{path.relative_to(SRC)}:{n}" for path in SRC.rglob("*.py") if path.name not in ("config.py", "device.py")
              for n, line in enumerate(path.read_text().splitlines(), 1) if re.search(r"[\"'](cpu|cuda)[\"']", line)]
    assert not pinned, pinned


def test_device_settings_are_validated_and_reach_lightning(monkeypatch):
    with pytest.raises(ConfigError, match="device.accelerator"):
        DeviceParams(accelerator="tpu-v9")
    with pytest.raises(ConfigError, match="device.memory_mb"):
        DeviceParams(memory_mb=0)
    d = DeviceParams(accelerator="gpu", devices=4, num_nodes=2, precision="bf16-mixed")
    assert trainer_args(d) == dict(accelerator="gpu", devices=4, num_nodes=2, precision="bf16-mixed")
    assert trainer_args(d, fp32=True)["precision"] == "32-true"  # the SGLD sampler
    assert torch_device(d) == torch.device("cuda", 0) and torch_device(DeviceParams()) == torch.device("cpu")
    monkeypatch.setenv("LOCAL_RANK", "3")  # process 3 of a multi-GPU run loads onto its own GPU
    assert torch_device(d) == torch.device("cuda", 3)


def test_inference_autocasts_to_bf16_only_when_asked():
    x, w = torch.randn(4, 8), torch.randn(8, 8)
    with inference(DeviceParams()):
        assert (x @ w).dtype == torch.float32 and torch.is_inference_mode_enabled()
    with inference(DeviceParams(precision="bf16-mixed")):
        assert (x @ w).dtype == torch.bfloat16


def test_batches_follow_the_memory_budget():
    """More memory, more sequences per batch; logits and cached patterns cost their share; the same
    shape is read from our GPT and its transformer-lens conversion."""
    model = GPT(GPTConfig(vocab_size=5000, n_ctx=64, n_layer=2, n_head=4, d_model=64, d_mlp=256))
    assert shape(model) == shape(gpt_to_hooked(model))
    small, large = batch_for(model, 64, 4), batch_for(model, 64, 64)
    assert 1 <= small < large and large == pytest.approx(16 * small, rel=0.1)
    assert batch_for(model, 64, 64, logits=True) < large / 4             # 5000 logits per position
    assert batch_for(model, 64, 64, cached_per_position=2 * 4 * 64) < large
    assert batch_for(model, 64, 1e-6) == 1                                 # never zero
    per_position = 8 * 64 + 2 * 4 * 64 + 256
    assert batch_for(model, 64, 64) * 64 * per_position * 4 <= 64 * 2 ** 20


def test_head_reads_are_the_same_in_one_batch_or_many():
    from emergence.analysis import heads
    from emergence.analysis.induction import induction_read
    torch.manual_seed(0)
    hooked = gpt_to_hooked(GPT(GPTConfig(vocab_size=8, n_ctx=32, n_layer=2, n_head=2, d_model=16, d_mlp=32)).eval())
    tokens = torch.randint(0, 8, (24, 32))
    reads = {"induction": induction_read, "previous": heads.previous_token_read, "first": heads.first_token_read}
    one = heads.head_means(hooked, tokens, reads, memory_mb=1000)
    many = heads.head_means(hooked, tokens, reads, memory_mb=0.05)
    assert batch_for(hooked, 32, 0.05, cached_per_position=2 * 2 * 32) < 24 <= batch_for(hooked, 32, 1000)
    patterns = heads.attention_patterns(hooked, tokens)
    for name in reads:
        torch.testing.assert_close(torch.from_numpy(many[name]), torch.from_numpy(one[name]), rtol=1e-5, atol=1e-6)
    total, count = induction_read(patterns, tokens)
    torch.testing.assert_close(torch.from_numpy(one["induction"]), total / count, rtol=1e-5, atol=1e-6)


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="M_TOP_PAD is glibc's")
def test_freed_step_memory_is_reused_without_page_faults():
    """`keep_freed_memory` (set by the CLI before every stage): a default-sized training step's freed
    tensors are reused, not faulted in again. With glibc's default a step faults about 4x the pages
    of its logits (34,000); kept, 0-2,700 were measured (the bound: twice its logits' pages)."""
    import resource
    from emergence.cli import keep_freed_memory
    from emergence.models.gpt import token_losses
    assert keep_freed_memory()
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=4096, n_ctx=256, n_layer=2, n_head=4, d_model=128, d_mlp=512))
    x = torch.randint(0, 4096, (8, 256))

    def step():
        token_losses(model(x), x).mean().backward()
    for _ in range(3):  # warm-up: the heap grows to the step's size
        step()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(3):
        step()
    logits_pages = x.numel() * 4096 * 4 // 4096
    per_step = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 3
    print(f"minor faults per step {per_step:.0f}, logits pages {logits_pages}")
    assert per_step < 2 * logits_pages
