"""Conversion of our GPT and of HF GPT-NeoX (Pythia) models into transformer-lens.

Analyses read activations through HookedTransformer hook names (``blocks.{l}.attn.hook_z``,
``blocks.{l}.hook_resid_post``, ...); no second hook system. Layer norms are not
folded and weights not centred, so logits match the source model.
"""
from __future__ import annotations

import contextlib
import logging
from pathlib import Path

import torch
from transformer_lens import HookedTransformer, HookedTransformerConfig
from transformer_lens.pretrained.weight_conversions import convert_nanogpt_weights

from emergence.models.gpt import GPT

PROCESS = dict(fold_ln=False, center_writing_weights=False, center_unembed=False,
               fold_value_biases=False, refactor_factored_attn_matrices=False)


@contextlib.contextmanager
def _quiet():
    """transformer-lens logs a notice per conversion; keep the pipeline's log readable."""
    logger = logging.getLogger()
    level = logger.level
    logger.setLevel(max(level, logging.WARNING))
    try:
        yield
    finally:
        logger.setLevel(level)


def hooked_config(model: GPT) -> HookedTransformerConfig:
    c = model.cfg
    return HookedTransformerConfig(
        n_layers=c.n_layer, d_model=c.d_model, d_head=c.d_head, n_heads=c.n_head, d_mlp=c.d_mlp,
        d_vocab=c.vocab_size, n_ctx=c.n_ctx, act_fn="gelu", normalization_type="LN",
        positional_embedding_type="standard", default_prepend_bos=False,
        device=str(next(model.parameters()).device), dtype=next(model.parameters()).dtype, attn_only=c.attn_only)


def _with_mlp_placeholders(state: dict, model: GPT) -> dict:
    """The converter reads every block's ln_2 and MLP: zeros stand in for an attention-only model's."""
    c = model.cfg
    shapes = {"ln_2.weight": (c.d_model,), "ln_2.bias": (c.d_model,), "mlp.c_fc.weight": (c.d_mlp, c.d_model),
              "mlp.c_fc.bias": (c.d_mlp,), "mlp.c_proj.weight": (c.d_model, c.d_mlp), "mlp.c_proj.bias": (c.d_model,)}
    dtype, device = next(model.parameters()).dtype, next(model.parameters()).device
    for layer in range(c.n_layer):
        for name, shape in shapes.items():
            if c.bias or name.endswith("weight"):
                state[f"transformer.h.{layer}.{name}"] = torch.zeros(shape, dtype=dtype, device=device)
    return state


def gpt_to_hooked(model: GPT) -> HookedTransformer:
    """A HookedTransformer computing the same function as our GPT (``attn_only`` included)."""
    cfg = hooked_config(model)
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    if model.cfg.attn_only:
        state = _with_mlp_placeholders(state, model)
    state = convert_nanogpt_weights(state, cfg)
    if model.cfg.attn_only:
        state = {k: v for k, v in state.items() if ".mlp." not in k and ".ln2." not in k}
    if "unembed.b_U" not in state:
        state["unembed.b_U"] = torch.zeros(cfg.d_vocab, dtype=cfg.dtype, device=cfg.device)
    with _quiet():
        hooked = HookedTransformer(cfg)
        hooked.load_and_process_state_dict(state, **PROCESS)
    return hooked.eval()


def hf_to_hooked(local_dir: str | Path, hf_model) -> HookedTransformer:
    """A HookedTransformer for an HF causal LM saved in `local_dir` (already loaded as `hf_model`)."""
    from transformer_lens.loading_from_pretrained import (get_pretrained_model_config,
                                                          get_pretrained_state_dict)
    local_dir = str(Path(local_dir).resolve())
    with _quiet():
        cfg = get_pretrained_model_config(local_dir, device=str(next(hf_model.parameters()).device),
                                          default_prepend_bos=False)
        state = get_pretrained_state_dict(local_dir, cfg, hf_model=hf_model)
        hooked = HookedTransformer(cfg)
        hooked.load_and_process_state_dict(state, **PROCESS)
    return hooked.eval()
