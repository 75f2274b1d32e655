"""Where the work runs: the one place that reads params.device.

* :func:`torch_device`: the torch device of ``device.accelerator`` (``auto``: CUDA, then MPS, then CPU).
* :func:`trainer_args`: the Lightning Trainer's accelerator, devices, num_nodes and precision for a
  training loop (the LM, the SAEs) or, with ``fp32=True``, for the SGLD sampler (its update and the LLC's
  loss differences are always computed in float32).
* :func:`inference`: the context of the inference reads that tolerate bf16 (monitors, probes' attention reads):
  ``torch.inference_mode`` and, when ``device.precision`` is bf16-*, ``torch.autocast`` to bfloat16 on
  that device. Loss comparisons (revision scoring, the SGLD observables, probes' patching, logit lens and
  trajectory), the SAEs' activations and the susceptibilities stay in float32.
* :func:`batch_for`: how many sequences one inference batch holds within ``device.memory_mb``.
"""
from __future__ import annotations

import contextlib
import dataclasses
import os

import torch
import torch.nn as nn

from emergence.config import DeviceParams


def torch_device(d: DeviceParams) -> torch.device:
    """The torch device of `d.accelerator` (Lightning's names: cpu, gpu/cuda, mps, auto); a GPU is this
    process's own (LOCAL_RANK, set by Lightning's and torchrun's launchers), so that each process of a
    multi-GPU run loads its models onto its GPU."""
    kind = d.accelerator
    if kind == "auto":
        kind = "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
    kind = {"gpu": "cuda"}.get(kind, kind)
    return torch.device(kind, int(os.environ.get("LOCAL_RANK", 0))) if kind == "cuda" else torch.device(kind)


def trainer_args(d: DeviceParams, fp32: bool = False) -> dict:
    """Keyword arguments of a Lightning Trainer on `d` (``fp32``: precision 32-true whatever d.precision)."""
    return dict(accelerator=d.accelerator, devices=d.devices, num_nodes=d.num_nodes,
                precision="32-true" if fp32 else d.precision)


@contextlib.contextmanager
def inference(d: DeviceParams):
    """``torch.inference_mode``, with bf16 autocast on `d`'s device when d.precision is bf16-*."""
    bf16 = d.precision.startswith("bf16")
    with torch.inference_mode(), torch.autocast(torch_device(d).type, dtype=torch.bfloat16, enabled=bf16):
        yield


@dataclasses.dataclass(frozen=True)
class Shape:
    d_model: int
    n_heads: int
    d_mlp: int
    vocab: int


def shape(model: nn.Module) -> Shape:
    """The widths that size a forward pass, of our GPT, an HF causal LM (wrapped or not) or a HookedTransformer."""
    cfg = getattr(model, "cfg", None)
    if cfg is not None and hasattr(cfg, "n_head"):                        # our GPT
        return Shape(cfg.d_model, cfg.n_head, 0 if cfg.attn_only else cfg.d_mlp, cfg.vocab_size)
    if cfg is not None and hasattr(cfg, "d_vocab"):                       # transformer-lens
        return Shape(cfg.d_model, cfg.n_heads, 0 if cfg.attn_only else (cfg.d_mlp or 0), cfg.d_vocab)
    hf = getattr(getattr(model, "hf", model), "config", None)
    if hf is not None:
        return Shape(hf.hidden_size, hf.num_attention_heads, getattr(hf, "intermediate_size", 4 * hf.hidden_size),
                     hf.vocab_size)
    raise TypeError(f"{type(model).__name__}: no known shape (our GPT, an HF causal LM or a HookedTransformer)")


RESIDUAL_COPIES = 8  # residual-width tensors alive at once in one block's forward (input, norm, q, k, v, z, out, sum)


def batch_for(model: nn.Module, n_ctx: int, memory_mb: float, logits: bool = False,
              cached_per_position: int = 0) -> int:
    """Sequences of `n_ctx` tokens per inference batch so that one block's activations (RESIDUAL_COPIES
    residual-width tensors, the attention scores n_heads x n_ctx and the MLP's hidden layer, per position,
    in float32), plus with `logits` the full-vocabulary logits and `cached_per_position` floats a caller
    keeps (e.g. every layer's attention patterns), fit `memory_mb`. Inference keeps no graph, so the
    blocks' activations do not add up. The chunked cross-entropy keeps its logits and their log-softmax
    within `memory_mb` too (`models.scoring`); measured, a scoring pass peaks at about `memory_mb`."""
    s = shape(model)
    per_position = (RESIDUAL_COPIES * s.d_model + 2 * s.n_heads * n_ctx + s.d_mlp + (s.vocab if logits else 0)
                    + cached_per_position)
    return max(1, int(memory_mb * 2 ** 20 // (4 * n_ctx * per_position)))
