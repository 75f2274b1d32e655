"""Checkpoint series: (step, model) over a training run, for our runs and for Pythia.

Our runs write one small file per scheduled step (``step_{N}.pt``: weights, model
config, tokenizer and data hashes) plus ``index.json``. HF GPT-NeoX / Pythia
revisions (``revision="step1000"``) come from a local directory with one
sub-directory per revision, or from the hub / local HF cache. Both yield
:class:`Checkpoint` objects whose ``model`` maps token ids (B, T) to logits
(B, T, V) and whose ``hooked()`` is the transformer-lens view of the same weights.
"""
from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Callable, Iterator

import torch
import torch.nn as nn

from emergence.errors import EmergenceError
from emergence.io import atomic_path, read_json
from emergence.models.gpt import GPT, GPTConfig

FORMAT = "emergence-checkpoint-v1"


class CheckpointError(EmergenceError):
    """A missing, corrupt or incompatible checkpoint; the message names the file."""


def save_checkpoint(path: str | Path, model: GPT, step: int, **meta) -> Path:
    """Atomically write weights, config and metadata for `step`."""
    payload = {"format": FORMAT, "step": step, "config": dataclasses.asdict(model.cfg),
               "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
               **meta}
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return Path(path)


def load_checkpoint(path: str | Path, device: torch.device | None = None) -> tuple[GPT, dict]:
    """The model (on `device`; None: where it was saved) and the metadata of a checkpoint file; clear
    errors when it is unusable."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} is missing: re-run `dvc repro train_lm`")
    try:
        payload = torch.load(path, map_location=device, weights_only=True)
    except Exception as exc:  # truncated zip, bad pickle, wrong file
        raise CheckpointError(f"checkpoint {path} is corrupt or truncated ({type(exc).__name__}: "
                              f"{exc}); delete it and re-run `dvc repro train_lm`") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not an emergence checkpoint (format {FORMAT} expected)")
    model = GPT(GPTConfig(**payload["config"]))
    try:
        model.load_state_dict(payload.pop("state_dict"))
    except RuntimeError as exc:
        raise CheckpointError(f"checkpoint {path} does not match its config: {exc}") from None
    return model.to(device).eval(), payload


@dataclasses.dataclass
class Checkpoint:
    step: int
    model: nn.Module
    source: str
    _to_hooked: Callable[[], nn.Module]

    def hooked(self):
        """transformer-lens HookedTransformer with the same weights."""
        return self._to_hooked()


class OwnSeries:
    """The checkpoint series written by `emergence train_lm` into `directory`, loaded onto `device`."""

    def __init__(self, directory: str | Path, device: torch.device | None = None):
        self.directory, self.device = Path(directory), device
        index = self.directory / "index.json"
        if not index.exists():
            raise CheckpointError(f"{index} not found: run `dvc repro train_lm` first")
        self.index = read_json(index)
        self.steps = [c["step"] for c in self.index["checkpoints"]]
        if not self.index.get("complete", True):
            raise CheckpointError(f"{self.directory} holds an interrupted training run (steps {self.steps} so far): "
                                  f"re-run `dvc repro train_lm` to resume it")

    def load(self, step: int) -> Checkpoint:
        from emergence.models.hooked import gpt_to_hooked
        entry = next((c for c in self.index["checkpoints"] if c["step"] == step), None)
        if entry is None:
            raise CheckpointError(f"no checkpoint for step {step} in {self.directory} (have {self.steps})")
        path = self.directory / entry["file"]
        model, _ = load_checkpoint(path, self.device)
        return Checkpoint(step, model, str(path), lambda: gpt_to_hooked(model))

    def __iter__(self) -> Iterator[Checkpoint]:
        return (self.load(s) for s in self.steps)


class HFCausalLM(nn.Module):
    """An HF causal LM as a plain ids -> logits module, with our GPT's ``hidden`` (the final
    normalised hidden states) and ``lm_head`` (the unembedding)."""

    def __init__(self, hf_model: nn.Module):
        super().__init__()
        self.hf = hf_model

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.hf(input_ids=idx, use_cache=False).logits

    def hidden(self, idx: torch.Tensor) -> torch.Tensor:
        return self.hf.base_model(input_ids=idx, use_cache=False).last_hidden_state

    @property
    def lm_head(self) -> nn.Module:
        return self.hf.get_output_embeddings()


def revision_step(revision: str) -> int:
    m = re.fullmatch(r"step(\d+)", revision)
    if m is None:
        raise CheckpointError(f"revision {revision!r} is not of the form 'step<N>' (as Pythia's are)")
    return int(m.group(1))


class HFSeries:
    """GPT-NeoX / Pythia revisions from `local_dir/<revision>/` or the hub / HF cache, loaded onto `device`."""

    def __init__(self, name: str, revisions: list[str], local_dir: str | Path | None = None,
                 offline: bool = True, device: torch.device | None = None):
        self.name, self.revisions, self.offline, self.device = name, list(revisions), offline, device
        self.local_dir = Path(local_dir) if local_dir else None
        self.steps = [revision_step(r) for r in self.revisions]

    def resolve(self, revision: str) -> Path:
        """Local directory holding `revision` (downloaded to the HF cache when online)."""
        if self.local_dir is not None:
            path = self.local_dir / revision
            if not (path / "config.json").exists():
                raise CheckpointError(f"{path} has no config.json: save revision {revision} of "
                                      f"{self.name} there with save_pretrained")
            return path
        from huggingface_hub import snapshot_download
        try:
            return Path(snapshot_download(self.name, revision=revision, local_files_only=self.offline))
        except Exception as exc:
            raise CheckpointError(
                f"cannot load {self.name} revision {revision}: not in the local HF cache and the hub "
                f"is {'not used (offline)' if self.offline else 'unreachable'} ({type(exc).__name__}). "
                f"Download it where there is internet (`huggingface-cli download {self.name} "
                f"--revision {revision}`), or set model.hf_local_dir to a directory with one "
                f"sub-directory per revision") from None

    def load(self, step: int) -> Checkpoint:
        from transformers import AutoModelForCausalLM

        from emergence.models.hooked import hf_to_hooked
        if step not in self.steps:
            raise CheckpointError(f"step {step} is not among model.hf_revisions {self.revisions}: add "
                                  f"step{step} there, or use one of the steps {self.steps} in the checkpoint lists")
        revision = self.revisions[self.steps.index(step)]
        path = self.resolve(revision)
        try:
            # float32 whatever the checkpoint's own dtype (Pythia's config says float16, which transformers
            # loads by default): the SGLD update and the LLC's loss differences need float32 weights
            hf = AutoModelForCausalLM.from_pretrained(path, local_files_only=True, dtype=torch.float32)
            hf = hf.to(self.device).eval()
        except Exception as exc:
            raise CheckpointError(f"cannot load {path}: {exc}") from None
        return Checkpoint(step, HFCausalLM(hf).eval(), str(path), lambda: hf_to_hooked(path, hf))

    def __iter__(self) -> Iterator[Checkpoint]:
        return (self.load(s) for s in self.steps)


def hf_tokenizer(model_params):
    """The HF model's own tokenizer (a `tokenizers.Tokenizer`) and its end-of-text token, from
    the first revision, for tokenising the corpus and the pairs as the model saw text."""
    from transformers import AutoTokenizer
    series = HFSeries(model_params.hf_name, model_params.hf_revisions, model_params.hf_local_dir,
                      offline=model_params.hf_offline)
    path = series.resolve(series.revisions[0])
    try:
        hf = AutoTokenizer.from_pretrained(path, local_files_only=True)
    except Exception as exc:
        raise CheckpointError(f"cannot load the tokenizer of {path}: {exc}") from None
    if not getattr(hf, "is_fast", False) or hf.eos_token is None:
        raise CheckpointError(f"{path}: a fast tokenizer (tokenizer.json) with an eos token is needed")
    tok = hf.backend_tokenizer
    tok.no_padding()
    tok.no_truncation()
    return tok, hf.eos_token


def open_series(model_params, checkpoints_dir: str | Path, device: torch.device | None = None):
    """The series named by the `model` parameters: our run's directory, or HF revisions; its models
    (and their transformer-lens conversions) on `device`."""
    if model_params.source == "own":
        return OwnSeries(checkpoints_dir, device)
    return HFSeries(model_params.hf_name, model_params.hf_revisions, model_params.hf_local_dir,
                    offline=model_params.hf_offline, device=device)
