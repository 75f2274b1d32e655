"""What a trace measures at each draw, read from forward passes that are made anyway.

* per-sequence losses (and optionally per-token losses) of the observable sequences:
  the pairs' correct and buggy versions, windows of the sampling corpus (label
  ``sampling``) and of held-out general code (label ``general``);
* per-component output norms phi_i(w) (the option to weight-restricted sampling for
  susceptibilities): the mean output norm of each attention head (its slice of the
  output projection, ``L{l}H{h}``) and of each MLP (``L{l}.mlp``), taken on one set's
  loss pass;
* residual reads: the residual stream after block ``layer`` at each sequence's final
  token, for one set (the pairs), so SAE features can be read off every draw later.
Works for our GPT and HF GPT-NeoX (Pythia).
"""
from __future__ import annotations

import contextlib
import dataclasses
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn as nn

from emergence.models.components import Components
from emergence.models.scoring import SequenceSet, module_device, scoring_batches, token_loss_matrix


@dataclasses.dataclass
class Observables:
    """``fn(model) -> {"obs": (n,), "token_obs": (k,) | None, "component_obs": (m,) | None,
    "reads": (r, d) | None}``."""

    fn: Callable[[nn.Module], dict]
    names: list[str]
    labels: np.ndarray
    groups: np.ndarray
    token_owner: np.ndarray | None = None    # (k,) observable index of each token value
    components: list[str] | None = None      # names of the m component observables
    reads: tuple[int, int, int] | None = None  # (r, layer, d_model): residual reads of the first r observables

    def __len__(self) -> int:
        return len(self.names)


@contextlib.contextmanager
def final_token_reads(model: nn.Module, layer: int, seqs: SequenceSet, memory_mb: float):
    """During `token_loss_matrix(model, seqs, memory_mb)`, keep the residual stream after block
    `layer` at each sequence's last input token only; yields the (N, d) tensor, dataset order."""
    batches = iter(scoring_batches(model, seqs, memory_mb))  # the batches token_loss_matrix makes, in order
    registry = Components(model)
    reads = torch.zeros(len(seqs), registry.d_model, device=module_device(model))

    def hook(module, inputs, output):
        h = output[0] if isinstance(output, tuple) else output
        idx = next(batches).to(h.device)
        reads[idx] = h[torch.arange(len(idx), device=h.device), seqs.lengths.to(h.device)[idx] - 1]

    handle = registry.blocks[layer].module.register_forward_hook(hook)
    try:
        yield reads
    finally:
        handle.remove()


def sequence_observables(sets: Sequence[SequenceSet], memory_mb: float, token_level: bool = False,
                         component_probe: int | None = None, model: nn.Module | None = None,
                         read_layer: int | None = None) -> Observables:
    """Per-sequence mean losses of every sequence of `sets` (in order). With `component_probe`,
    the index of the set whose loss pass also records the component output norms; with
    `read_layer`, the residual after that block at the final token of every sequence of the
    first set. Scored in batches within `memory_mb` (`scoring_batches`), in float32."""
    scored = [s.mask.bool() for s in sets]

    def fn(m: nn.Module) -> dict:
        values, tokens, comps, reads = [], [], None, None
        for k, seqs in enumerate(sets):
            with contextlib.ExitStack() as stack:
                read_norms = stack.enter_context(Components(m).output_norms()) if k == component_probe else None
                if k == 0 and read_layer is not None:
                    reads = stack.enter_context(final_token_reads(m, read_layer, seqs, memory_mb))
                matrix = token_loss_matrix(m, seqs, memory_mb)
            if read_norms is not None:
                comps = read_norms()
            values.append(matrix.sum(1) / seqs.mask.to(matrix.device).sum(1))
            if token_level:
                tokens.append(matrix[scored[k].to(matrix.device)])
        return {"obs": torch.cat(values), "token_obs": torch.cat(tokens) if token_level else None,
                "component_obs": comps, "reads": reads}

    names = [n for s in sets for n in s.names]
    owner = None
    if token_level:
        offsets = np.cumsum([0] + [len(s) for s in sets])
        owner = np.concatenate([torch.nonzero(sc)[:, 0].numpy() + off for sc, off in zip(scored, offsets)]).astype(np.int32)
    components = Components(model).names() if component_probe is not None else None
    reads = None
    if read_layer is not None:
        reads = (len(sets[0]), read_layer, Components(model).d_model)
    return Observables(fn, names, np.concatenate([s.labels for s in sets]),
                       np.concatenate([s.groups for s in sets]), owner, components, reads)

