"""The SGLD sampler on a small transformer: records, guards, restriction, caching, and
agreement with devinterp 2.0.1 on the LLC."""
from pathlib import Path

import numpy as np
import pytest
import torch

from emergence.config import SamplerParams
from emergence.estimators.llc import llc
from emergence.models.gpt import GPT, GPTConfig
from emergence.models.scoring import load_pair_sequences, sequence_losses
from emergence.sampling.observables import sequence_observables
from emergence.sampling.sampler_module import SamplerDivergence, sample_lm
from emergence.sampling.trace import cache_key, load_trace, save_trace

CFG = dict(lr=1e-5, nbeta=100.0, localization=100.0, preconditioned=False, chains=2, burn_in=5,
           draws=10, thin=1, batch_size=4, obs_every=2, init_batches=2, check_every=5)
SMALL_MB, LARGE_MB = 1, 64  # inference budgets: about 7 of the test's sequences per batch, and all of them


@pytest.fixture(scope="module")
def tiny_model(tiny_corpus):
    """A small GPT trained briefly on the tiny corpus (an LLC is defined near a minimum)."""
    from emergence.models.gpt import token_losses
    from emergence.data.windows import TokenWindows
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=300, n_ctx=64, n_layer=1, n_head=2, d_model=32, d_mlp=64))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    stream = TokenWindows(str(tiny_corpus / "train.bin"), 64, 16, 123)
    for step in range(300):
        x, y = stream.batch(step)
        loss = token_losses(model(x), y).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


@pytest.fixture(scope="module")
def seqs(tiny_corpus):
    return load_pair_sequences(tiny_corpus / "pairs_tokens.jsonl", 64, n_pairs=6, seed=0)


def test_trace_records_in_dataset_order(tiny_model, tiny_corpus, seqs, tmp_path):
    cfg = SamplerParams(**CFG, token_level=True)
    trace = sample_lm(tiny_model, cfg, 0, str(tiny_corpus / "train.bin"), 64,
                      sequence_observables([seqs], SMALL_MB, True))
    assert trace["loss"].shape == (2, cfg.steps) and np.isfinite(trace["loss"]).all()
    assert trace["obs"].shape == (2, 5, len(seqs)) and np.isfinite(trace["obs"]).all()
    assert list(trace["obs_step"].values) == [5, 7, 9, 11, 13]
    anchor = trace["anchor_loss"].values  # the paired losses at w*: at the draws, which the LLC reads, only
    assert np.isfinite(anchor[:, trace["draw_step"].values]).all() and np.isnan(anchor[:, :cfg.burn_in]).all()
    np.testing.assert_allclose(trace["obs_init"].values, sequence_losses(tiny_model, seqs, LARGE_MB).numpy(), rtol=1e-5)
    assert list(trace["observable"].values) == seqs.names
    assert trace["token_obs"].shape[-1] == int(seqs.mask.sum())
    path = save_trace(trace, tmp_path / "t.nc")
    again = load_trace(path)
    np.testing.assert_array_equal(again["obs"].values, trace["obs"].values)
    assert again.attrs["status"] == "complete"


def test_sampling_is_deterministic_and_the_inference_budget_does_not_matter(tiny_model, tiny_corpus, seqs):
    a = sample_lm(tiny_model, SamplerParams(**CFG), 3, str(tiny_corpus / "train.bin"), 64,
                  sequence_observables([seqs], SMALL_MB))
    b = sample_lm(tiny_model, SamplerParams(**CFG), 3, str(tiny_corpus / "train.bin"), 64,
                  sequence_observables([seqs], LARGE_MB))
    np.testing.assert_array_equal(a["loss"].values, b["loss"].values)
    np.testing.assert_allclose(a["obs"].values, b["obs"].values, rtol=1e-5)


def test_divergence_stops_with_step_chain_and_hint(tiny_model, tiny_corpus):
    cfg = SamplerParams(**{**CFG, "lr": 10.0, "localization": 0.0, "draws": 40})  # no pull to bound the step
    with pytest.raises(SamplerDivergence, match=r"chain \d+ diverged at step \d+.*lower sampler.lr") as info:
        sample_lm(tiny_model, cfg, 0, str(tiny_corpus / "train.bin"), 64)
    partial = info.value.trace
    assert partial.attrs["status"] == "diverged"
    assert 0 < partial.attrs["steps_done"] < cfg.steps
    assert np.isfinite(partial["loss"].values[:, 0]).all()


def test_weight_restriction_moves_only_the_component(tiny_model, tiny_corpus):
    from emergence.sampling.sampler_module import SGLDRun, lm_loss, own_chains
    from emergence.data.windows import TokenWindows
    run = SGLDRun(tiny_model, SamplerParams(**CFG), 0, lm_loss, components=["L0H1"])
    stream = TokenWindows(str(tiny_corpus / "train.bin"), 64, 8, 0)
    run.measure_init([stream.batch(99)])
    for s in range(3):
        run.iterate(s, own_chains(stream.batch(s), 2, [0, 1]))
    moved = (run.chains.W != run.optimizer.state[run.chains.W]["anchor"]).any(0)
    assert torch.equal(moved, run.mask.bool())
    assert int(run.mask.sum()) == 3 * 16 * 32 + 3 * 16 + 32 * 16  # q, k, v rows (+ biases) and W_O columns
    assert not run.chains.replicas[0].transformer.wte.weight.requires_grad


def test_cache_key_depends_on_weights_data_settings_and_code(monkeypatch):
    from emergence.sampling import trace
    base = cache_key("w", "d", {"lr": 1})
    assert len({base, cache_key("w2", "d", {"lr": 1}), cache_key("w", "d2", {"lr": 1}),
                cache_key("w", "d", {"lr": 2})}) == 4
    monkeypatch.setattr(trace, "code_version", lambda: "a changed sampler")
    assert cache_key("w", "d", {"lr": 1}) != base


def test_code_version_covers_the_sampler_model_and_window_source():
    from emergence.sampling import trace
    root = Path(trace.__file__).resolve().parents[1]
    assert all((root / part).exists() for part in ("sampling/sgld.py", "models/gpt.py", "data/windows.py"))
    assert trace.CODE == ("sampling", "models", "data/windows.py") and len(trace.code_version()) == 64


def test_llc_agrees_with_devinterp(tiny_model, tiny_corpus):
    """Same model, data, plain SGLD, eps, n*beta, gamma, chains, draws and batch size."""
    from datasets import Dataset
    from devinterp.slt.llc import llc as devinterp_llc
    from emergence.data.windows import TokenWindows
    settings = dict(lr=3e-5, nbeta=300.0, localization=1000.0, chains=4, draws=300, batch_size=8)
    windows = TokenWindows(str(tiny_corpus / "train.bin"), 63, 2048, 0).batch(0)  # 64 tokens, 63 targets
    ids = torch.cat([windows[0], windows[1][:, -1:]], 1)
    dataset = Dataset.from_dict({"input_ids": ids.tolist()}).with_format("torch")
    result = devinterp_llc(tiny_model, dataset, {},
                           lr=settings["lr"], n_beta=settings["nbeta"], localization=settings["localization"],
                           num_chains=settings["chains"], num_draws=settings["draws"],
                           batch_size=settings["batch_size"], num_burnin_steps=0, device="cpu")
    theirs, theirs_se = float(result["llc_mean"]), float(result["llc_std"]) / 2
    cfg = SamplerParams(lr=settings["lr"], nbeta=settings["nbeta"], localization=settings["localization"],
                        preconditioned=False, rms_adapt="every_step", chains=4, burn_in=0, draws=300, batch_size=8, init_batches=32,
                        paired=False)
    ours = llc(sample_lm(tiny_model, cfg, 0, str(tiny_corpus / "train.bin"), 63))
    print(f"ours {ours['llc']:.3f} +- {ours['llc_se']:.3f}, devinterp {theirs:.3f} +- {theirs_se:.3f}")
    assert abs(ours["llc"] - theirs) < 4 * np.hypot(ours["llc_se"], theirs_se) + 0.1 * abs(theirs)


def test_component_masks_for_gpt_neox():
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM
    from emergence.models.checkpoints import HFCausalLM
    from emergence.sampling.chains import FlatChains
    model = HFCausalLM(GPTNeoXForCausalLM(GPTNeoXConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2,
                                                         num_attention_heads=4, intermediate_size=64)))
    chains = FlatChains(model, 1)
    head = chains.mask_for(["L1H2"])
    assert int(head.sum()) == 3 * 8 * 32 + 3 * 8 + 32 * 8
    mlp = chains.mask_for(["L0.mlp"])
    assert int(mlp.sum()) == 32 * 64 + 64 + 64 * 32 + 32
    with pytest.raises(ValueError, match="no layer 5"):
        chains.mask_for(["L5H0"])


SPLIT_SCRIPT = """
import sys, torch
from emergence.config import DeviceParams, SamplerParams
from emergence.models.gpt import GPT, GPTConfig
from emergence.models.scoring import load_pair_sequences
from emergence.sampling.observables import sequence_observables
from emergence.sampling.sampler_module import sample_lm
from emergence.sampling.trace import save_trace
model_path, corpus, out, cfg, device = sys.argv[1], sys.argv[2], sys.argv[3], eval(sys.argv[4]), eval(sys.argv[5])
model = GPT(GPTConfig(vocab_size=300, n_ctx=64, n_layer=1, n_head=2, d_model=32, d_mlp=64))
model.load_state_dict(torch.load(model_path))
seqs = load_pair_sequences(corpus + "/pairs_tokens.jsonl", 64, n_pairs=6, seed=0)
trace = sample_lm(model.eval(), SamplerParams(**cfg), 3, corpus + "/train.bin", 64,
                  sequence_observables([seqs], 1, component_probe=0, model=model), device=DeviceParams(**device))
if torch.distributed.get_rank() == 0:
    save_trace(trace, out)
"""


def test_chains_split_over_two_processes_give_the_same_trace(tiny_model, tiny_corpus, seqs, tmp_path):
    """device.devices=2: Lightning launches 2 processes (gloo on CPU), each runs half the chains;
    the gathered trace equals the one-process trace, because a chain's noise and data depend only on it."""
    import subprocess
    import sys
    cfg = {**CFG, "chains": 3}
    one = sample_lm(tiny_model, SamplerParams(**cfg), 3, str(tiny_corpus / "train.bin"), 64,
                    sequence_observables([seqs], SMALL_MB, component_probe=0, model=tiny_model))
    torch.save(tiny_model.state_dict(), tmp_path / "model.pt")
    (tmp_path / "split.py").write_text(SPLIT_SCRIPT)
    res = subprocess.run([sys.executable, str(tmp_path / "split.py"), str(tmp_path / "model.pt"), str(tiny_corpus),
                          str(tmp_path / "two.nc"), repr(cfg), repr({"devices": 2})],
                         cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    two = load_trace(tmp_path / "two.nc")
    for name in ("loss", "anchor_loss", "obs", "component_obs"):
        np.testing.assert_allclose(two[name].values, one[name].values, rtol=1e-5, atol=1e-6, err_msg=name)
    assert not np.allclose(one["loss"].values[0], one["loss"].values[1])  # the chains differ


def test_chains_split_over_two_nodes_launched_by_torchrun(tiny_model, tiny_corpus, seqs, tmp_path):
    """device.num_nodes=2: two torchrun launches (node ranks 0 and 1, one process each, gloo) stand
    for two machines; Lightning's torchrun environment joins them and the gathered trace equals the
    one-process trace. (Two real machines, SLURM's srun and a GPU backend are not exercised here.)"""
    import socket
    import subprocess
    import sys
    cfg = {**CFG, "chains": 2}
    one = sample_lm(tiny_model, SamplerParams(**cfg), 3, str(tiny_corpus / "train.bin"), 64,
                    sequence_observables([seqs], SMALL_MB, component_probe=0, model=tiny_model))
    torch.save(tiny_model.state_dict(), tmp_path / "model.pt")
    (tmp_path / "split.py").write_text(SPLIT_SCRIPT)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc-per-node", "1",
                "--master-addr", "127.0.0.1", "--master-port", str(port)]
    args = [str(tmp_path / "split.py"), str(tmp_path / "model.pt"), str(tiny_corpus), str(tmp_path / "nodes.nc"),
            repr(cfg), repr({"num_nodes": 2})]
    nodes = [subprocess.Popen([*torchrun, "--node-rank", str(rank), *args], cwd=tmp_path, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for rank in (0, 1)]
    outputs = [node.communicate(timeout=600)[0] for node in nodes]
    assert all(node.returncode == 0 for node in nodes), outputs[0][-3000:] + outputs[1][-3000:]
    two = load_trace(tmp_path / "nodes.nc")
    for name in ("loss", "anchor_loss", "obs", "component_obs"):
        np.testing.assert_allclose(two[name].values, one[name].values, rtol=1e-5, atol=1e-6, err_msg=name)


def test_progress_reports_done_total_and_eta_when_not_on_a_terminal(tiny_model, tiny_corpus, caplog, monkeypatch):
    """Off a terminal (here: pytest's captured stderr), a fit logs `label: done/total steps (pct), elapsed,
    ETA` lines (every EMERGENCE_STATUS_S seconds; 0 here: every step)."""
    import logging
    monkeypatch.setenv("EMERGENCE_STATUS_S", "0")
    with caplog.at_level(logging.INFO, logger="emergence.progress"):
        sample_lm(tiny_model, SamplerParams(**CFG), 3, str(tiny_corpus / "train.bin"), 64, label="sample step 7")
    lines = [r.getMessage() for r in caplog.records if r.name == "emergence.progress"]
    steps = CFG["burn_in"] + CFG["draws"]
    assert lines[0].startswith(f"sample step 7: 1/{steps} SGLD steps (")
    assert f"{steps}/{steps} SGLD steps (100%)" in lines[-1] and "ETA 0s" in lines[-1]


def test_residual_reads_equal_the_sae_stage_reading(tiny_model, seqs):
    """The reads recorded at each draw are the activations the SAE stage reads (transformer-lens
    hook_resid_post at the final token), in dataset order, whatever the inference batch size."""
    from emergence.models.hooked import gpt_to_hooked
    from emergence.stages.sae import read_activations
    expected = read_activations(gpt_to_hooked(tiny_model), "blocks.0.hook_resid_post", seqs, "final", SMALL_MB)
    for memory_mb in (SMALL_MB, LARGE_MB):
        reads = sequence_observables([seqs], memory_mb, read_layer=0, model=tiny_model).fn(tiny_model)["reads"]
        np.testing.assert_allclose(reads.numpy(), expected, atol=1e-4)
