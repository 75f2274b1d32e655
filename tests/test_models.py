"""Our GPT, its checkpoint series and training; HF GPT-NeoX revisions through the same door."""
import pytest
import torch

from emergence.analysis.heads import head_monitors, repeated_random_tokens
from emergence.models.checkpoints import (CheckpointError, HFSeries, OwnSeries, load_checkpoint,
                                          save_checkpoint)
from emergence.models.gpt import GPT, GPTConfig, token_losses
from emergence.models.hooked import gpt_to_hooked
from emergence.models.lm_module import checkpoint_schedule
from emergence.stages.train_lm import train, unigram_loss


def perturbed_gpt(seed=0, **kw):
    torch.manual_seed(seed)
    cfg = GPTConfig(**{**dict(vocab_size=300, n_ctx=32, n_layer=2, n_head=4, d_model=64, d_mlp=256), **kw})
    model = GPT(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model


def test_hooked_conversion_matches_our_logits():
    model = perturbed_gpt()
    x = torch.randint(0, 300, (3, 32))
    hooked = gpt_to_hooked(model)
    assert (model(x) - hooked(x)).abs().max() < 1e-4
    _, cache = hooked.run_with_cache(x)
    assert cache["blocks.1.attn.hook_z"].shape == (3, 32, 4, 16)


@pytest.fixture(scope="module")
def neox_revisions(tmp_path_factory):
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM
    root = tmp_path_factory.mktemp("pythia-tiny")
    cfg = GPTNeoXConfig(vocab_size=300, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=256, max_position_embeddings=64, rotary_pct=0.25)
    models = {}
    for step in (0, 8, 64):
        torch.manual_seed(step)
        m = GPTNeoXForCausalLM(cfg).eval()
        m.save_pretrained(root / f"step{step}")
        models[step] = m
    return root, models


def test_hf_series_from_local_revisions(neox_revisions):
    root, models = neox_revisions
    series = HFSeries("EleutherAI/pythia-tiny", ["step0", "step8", "step64"], local_dir=root)
    assert series.steps == [0, 8, 64]
    x = torch.randint(0, 300, (2, 20))
    seen = []
    for ckpt in series:
        seen.append(ckpt.step)
        ref = models[ckpt.step](input_ids=x).logits
        assert (ckpt.model(x) - ref).abs().max() < 1e-5
        assert (ckpt.hooked()(x) - ref).abs().max() < 1e-4
    assert seen == [0, 8, 64]


def test_hf_revisions_saved_in_half_precision_load_in_float32(neox_revisions, tmp_path):
    """Pythia's revisions are saved as float16 (config torch_dtype), which transformers would load as is:
    the series loads float32, which the SGLD update and the LLC's loss differences need."""
    from transformers import GPTNeoXForCausalLM
    root, _ = neox_revisions
    GPTNeoXForCausalLM.from_pretrained(root / "step0").half().save_pretrained(tmp_path / "step0")
    ckpt = HFSeries("EleutherAI/pythia-tiny", ["step0"], local_dir=tmp_path).load(0)
    assert {p.dtype for p in ckpt.model.parameters()} == {torch.float32}
    assert ckpt.hooked().cfg.dtype == torch.float32


def test_hf_hub_offline_gives_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    series = HFSeries("EleutherAI/pythia-160m", ["step1000"], offline=True)
    with pytest.raises(CheckpointError, match=r"pythia-160m revision step1000.*huggingface-cli download"):
        series.load(1000)
    with pytest.raises(CheckpointError, match="step<N>"):
        HFSeries("x", ["main"])


def test_checkpoint_roundtrip_and_corruption(tmp_path):
    model = perturbed_gpt()
    path = save_checkpoint(tmp_path / "step_5.pt", model, 5, tokenizer_sha256="abc")
    loaded, meta = load_checkpoint(path)
    assert meta["step"] == 5 and meta["tokenizer_sha256"] == "abc"
    x = torch.randint(0, 300, (2, 16))
    assert torch.equal(loaded(x), model(x))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"step_5\.pt is corrupt or truncated"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match="missing"):
        load_checkpoint(tmp_path / "nope.pt")


def test_checkpoint_schedule_is_pythia_like():
    assert checkpoint_schedule(2000, 256, 8) == [0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 474, 692, 910,
                                                 1128, 1346, 1564, 1782, 2000]
    assert checkpoint_schedule(12, 4, 2) == [0, 1, 2, 4, 8, 12]


def test_induction_score_rises_on_repeated_sequences():
    torch.manual_seed(0)
    V, L = 32, 12
    model = GPT(GPTConfig(vocab_size=V, n_ctx=2 * L, n_layer=2, n_head=2, d_model=32, d_mlp=64))
    before = head_monitors(gpt_to_hooked(model), V, L, 32, 1, 0.05)["prefix_matching"].max()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for step in range(150):
        x = repeated_random_tokens(V, L, 64, 1000 + step)
        loss = token_losses(model(x[:, :-1]), x[:, 1:])[:, L:].mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = head_monitors(gpt_to_hooked(model), V, L, 32, 1, 0.05)["prefix_matching"].max()
    assert before < 0.15 and after > 0.5


class Interrupt(Exception):
    pass


def test_training_writes_series_and_resumes_exactly(tiny_corpus, tiny_params, tmp_path):
    import pytorch_lightning as pl
    full = train(tiny_params, tiny_corpus, tmp_path / "full")
    assert [c["step"] for c in full["checkpoints"]] == [0, 1, 2, 4, 8, 12]
    first, last = full["checkpoints"][0], full["checkpoints"][-1]
    assert last["val/loss"] < first["val/loss"]
    assert 0 <= last["pairs/correct_preferred"] <= 1

    class StopAt(pl.Callback):
        def on_train_batch_end(self, trainer, *args):
            if trainer.global_step == 10:
                raise Interrupt

    import emergence.stages.train_lm as stage
    original = stage.build_trainer
    stage.build_trainer = lambda p, callbacks, logger: original(p, callbacks + [StopAt()], logger)
    try:
        with pytest.raises(Interrupt):
            train(tiny_params, tiny_corpus, tmp_path / "resumed")
    finally:
        stage.build_trainer = original
    assert (tmp_path / "resumed" / "last.ckpt").exists()
    resumed = train(tiny_params, tiny_corpus, tmp_path / "resumed")
    assert resumed["checkpoints"] == full["checkpoints"]
    a = OwnSeries(tmp_path / "full").load(12).model.state_dict()
    b = OwnSeries(tmp_path / "resumed").load(12).model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_unigram_baseline(tiny_corpus):
    loss = unigram_loss(tiny_corpus / "train.bin", tiny_corpus / "val.bin", 300)
    assert 2.0 < loss < 300 ** 0.5


def test_training_runs_data_parallel_on_cpu_with_two_processes(tiny_corpus, tmp_path):
    """Lightning's DDP (gloo on CPU, 2 spawned processes): ranks read disjoint windows, rank 0 writes."""
    from emergence.config import load_params
    from tests.conftest import ROOT, TINY
    p = load_params(ROOT / "params.yaml", TINY + ["device.devices=2", "device.strategy=ddp_spawn"])
    index = train(p, tiny_corpus, tmp_path / "ddp")
    assert [c["step"] for c in index["checkpoints"]] == [0, 1, 2, 4, 8, 12]
    assert index["checkpoints"][-1]["val/loss"] < index["checkpoints"][0]["val/loss"]
    assert (tmp_path / "ddp" / "last.ckpt").exists()
    from emergence.data.windows import TokenWindows
    windows = TokenWindows(str(tiny_corpus / "train.bin"), 64, 4, 0)
    assert not torch.equal(windows.batch(0)[0], windows.batch(1)[0])


@pytest.mark.parametrize("arch", ["gpt", "neox"])
def test_scoring_holds_logits_for_a_chunk_of_positions_only(arch, neox_revisions):
    """token_loss_matrix unembeds at most `memory_mb` of logits at once (here 40 positions), and gives
    the losses of the full-vocabulary logits of the whole batch."""
    from emergence.models.checkpoints import HFCausalLM
    from emergence.models.scoring import build_sequences, token_loss_matrix
    torch.manual_seed(0)
    if arch == "gpt":
        model = GPT(GPTConfig(vocab_size=300, n_ctx=32, n_layer=1, n_head=2, d_model=16, d_mlp=32)).eval()
    else:
        model = HFSeries("tiny", ["step0"], local_dir=neox_revisions[0]).load(0).model
        assert isinstance(model, HFCausalLM)
    ids = torch.randint(0, 300, (12, 33))
    tokens = [ids[i, :33 - 4 * (i % 4)].tolist() for i in range(12)]  # some shorter: padding in the batches
    seqs = build_sequences(tokens, [1] * 12, 32, [str(i) for i in range(12)], ["correct"] * 12, ["g"] * 12)
    rows = []
    model.lm_head.register_forward_hook(lambda module, inputs, output: rows.append(len(output)))
    chunk_mb = 40 * 4 * 300 / 2 ** 20
    losses = token_loss_matrix(model, seqs, chunk_mb)
    assert max(rows) <= 40 and sum(rows) == int(seqs.mask.sum())
    with torch.no_grad():
        full = token_losses(model(seqs.ids), seqs.targets) * seqs.mask
    torch.testing.assert_close(losses, full, rtol=1e-5, atol=1e-5)


def test_length_batches_cover_every_sequence_once_within_the_padding_bound():
    """Inference batches hold at most `batch_size` sequences, each once, and pad by at most MAX_PADDING
    of their tokens; one batch of all would pad by 60 % here."""
    from emergence.models.scoring import MAX_PADDING, build_sequences, length_batches
    lengths = [10 + (7 * i) % 90 for i in range(60)]
    seqs = build_sequences([list(range(n + 1)) for n in lengths], [1] * 60, 128, [str(i) for i in range(60)],
                           ["correct"] * 60, ["g"] * 60)
    batches = length_batches(seqs, 16)
    assert sorted(i for b in batches for i in b.tolist()) == list(range(60))
    assert max(len(b) for b in batches) <= 16
    for b in batches:
        n = seqs.lengths[b]
        assert len(b) * int(n.max()) <= (1 + MAX_PADDING) * int(n.sum())
    assert 60 * max(lengths) > 1.6 * sum(lengths)
