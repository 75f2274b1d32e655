"""Typed experiment parameters, loaded from params.yaml and validated at start-up.

``conf/config.yaml`` holds every parameter; a profile (``conf/profile/NAME.yaml``) overrides some.
params.yaml is their Hydra composition, as DVC writes it for ``dvc exp run -S profile=NAME``.
Each section of params.yaml is a dataclass; omegaconf checks types and unknown keys,
and ``__post_init__`` checks ranges. A bad value fails with its full key, the value
and what is allowed, before any work starts.
"""
from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
from pathlib import Path
from typing import Any, Optional

from omegaconf import OmegaConf

from emergence.errors import EmergenceError
from omegaconf.errors import OmegaConfBaseException


class ConfigError(EmergenceError, ValueError):
    """An invalid parameter: names the key, the value and the allowed range."""


def _require(section: str, key: str, value: Any, ok: bool, allowed: str) -> None:
    if not ok:
        raise ConfigError(f"params: {section}.{key} = {value!r} is invalid; allowed: {allowed}")


@dataclasses.dataclass
class SandboxParams:
    timeout_s: float = 10.0
    cpu_seconds: int = 10
    memory_mb: int = 1024
    max_processes: int = 8
    workers: int = 2

    def __post_init__(self) -> None:
        for key in ("timeout_s", "cpu_seconds", "memory_mb", "max_processes", "workers"):
            v = getattr(self, key)
            _require("sandbox", key, v, v > 0, "> 0")
        _require("sandbox", "memory_mb", self.memory_mb, self.memory_mb >= 128, ">= 128 (the interpreter needs it)")

    def limits(self):
        from emergence.data.sandbox import Limits
        return Limits(timeout_s=self.timeout_s, cpu_seconds=self.cpu_seconds, memory_mb=self.memory_mb,
                      max_processes=self.max_processes)


@dataclasses.dataclass
class PairsParams:
    max_per_problem: int = 3
    candidates_per_problem: int = 10
    min_pairs: int = 150
    extra_files: list[str] = dataclasses.field(default_factory=list)
    max_problems: int = 0            # 0: every HumanEval problem

    def __post_init__(self) -> None:
        _require("pairs", "max_per_problem", self.max_per_problem, self.max_per_problem >= 1, ">= 1")
        _require("pairs", "candidates_per_problem", self.candidates_per_problem,
                 self.candidates_per_problem >= self.max_per_problem, ">= pairs.max_per_problem")
        _require("pairs", "min_pairs", self.min_pairs, self.min_pairs >= 0, ">= 0")
        _require("pairs", "max_problems", self.max_problems, self.max_problems >= 0, ">= 0 (0: all)")
        for f in self.extra_files:  # pairs/ is a dependency of the pairs stage: edits re-run it
            parts = Path(f).parts
            _require("pairs", "extra_files", f, len(parts) > 1 and parts[0] == "pairs" and ".." not in parts,
                     "relative paths of files under pairs/, e.g. pairs/example.jsonl")


@dataclasses.dataclass
class CorpusParams:
    vocab_size: int = 4096
    val_percent: float = 5.0
    decontam_ngram: int = 13
    max_file_bytes: int = 200_000

    def __post_init__(self) -> None:
        _require("corpus", "vocab_size", self.vocab_size, 260 <= self.vocab_size <= 65535,
                 "260..65535 (ids are stored as uint16)")
        _require("corpus", "val_percent", self.val_percent, 0 < self.val_percent < 50, "0 < x < 50")
        _require("corpus", "decontam_ngram", self.decontam_ngram, self.decontam_ngram >= 4, ">= 4")
        _require("corpus", "max_file_bytes", self.max_file_bytes, self.max_file_bytes > 0, "> 0")


@dataclasses.dataclass
class ModelParams:
    source: str = "own"          # own: train our GPT; hf: GPT-NeoX / Pythia revisions
    n_layer: int = 2
    n_head: int = 4
    d_model: int = 128
    d_mlp: int = 512
    n_ctx: int = 256
    bias: bool = True
    hf_name: str = "EleutherAI/pythia-160m"
    hf_revisions: list[str] = dataclasses.field(default_factory=lambda: ["step1000", "step143000"])
    hf_local_dir: Optional[str] = None
    hf_offline: bool = True

    def __post_init__(self) -> None:
        _require("model", "source", self.source, self.source in ("own", "hf"), "'own' or 'hf'")
        for key in ("n_layer", "n_head", "d_model", "d_mlp", "n_ctx"):
            v = getattr(self, key)
            _require("model", key, v, v >= 1, ">= 1")
        _require("model", "d_model", self.d_model, self.d_model % self.n_head == 0,
                 f"a multiple of model.n_head={self.n_head}")
        _require("model", "hf_revisions", self.hf_revisions, len(self.hf_revisions) >= 1,
                 "a non-empty list like [step1000, step143000]")


@dataclasses.dataclass
class DeviceParams:
    """Where every stage runs (Lightning's names). LM and SAE training run at `precision`; inference reads
    (monitors, probes' attention reads) autocast to bf16 when it is bf16-*; the SGLD
    sampler is always float32 (its update and the LLC's loss differences)."""
    accelerator: str = "cpu"         # cpu | gpu | mps | auto
    devices: int = 1                 # per machine: DDP for LM training, the chains split for SGLD
    num_nodes: int = 1               # machines (launched by SLURM's srun or torchrun: see the README)
    precision: str = "32-true"
    strategy: str = "auto"           # LM training's Lightning strategy
    memory_mb: int = 512             # every inference batch size follows; a pass peaks at about this

    def __post_init__(self) -> None:
        _require("device", "accelerator", self.accelerator, self.accelerator in ACCELERATORS, str(ACCELERATORS))
        for key in ("devices", "num_nodes", "memory_mb"):
            _require("device", key, getattr(self, key), getattr(self, key) >= 1, ">= 1")
        _require("device", "precision", self.precision, self.precision in PRECISIONS, str(PRECISIONS))


ACCELERATORS = ("cpu", "gpu", "cuda", "mps", "auto")
PRECISIONS = ("32-true", "bf16-mixed", "bf16-true", "16-mixed")


@dataclasses.dataclass
class CheckpointParams:
    log_until: int = 256        # 0, 1, 2, 4, ... below this step
    n_linear: int = 8           # then this many evenly spaced to max_steps

    def __post_init__(self) -> None:
        _require("train.checkpoints", "log_until", self.log_until, self.log_until >= 1, ">= 1")
        _require("train.checkpoints", "n_linear", self.n_linear, self.n_linear >= 0, ">= 0")


@dataclasses.dataclass
class TrainParams:
    max_steps: int = 2000
    batch_size: int = 16
    lr: float = 3e-3
    min_lr: float = 3e-4
    warmup_steps: int = 50
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    log_every: int = 10
    val_windows: int = 64
    checkpoints: CheckpointParams = dataclasses.field(default_factory=CheckpointParams)

    def __post_init__(self) -> None:
        for key in ("max_steps", "batch_size", "log_every", "val_windows"):
            v = getattr(self, key)
            _require("train", key, v, v >= 1, ">= 1")
        _require("train", "lr", self.lr, 0 < self.lr < 1, "0 < lr < 1")
        _require("train", "min_lr", self.min_lr, 0 <= self.min_lr <= self.lr, "0 <= min_lr <= train.lr")
        _require("train", "warmup_steps", self.warmup_steps, 0 <= self.warmup_steps < self.max_steps,
                 "0 <= warmup_steps < train.max_steps")
        _require("train", "weight_decay", self.weight_decay, self.weight_decay >= 0, ">= 0")
        _require("train", "grad_clip", self.grad_clip, self.grad_clip > 0, "> 0")


@dataclasses.dataclass
class MonitorParams:
    repeat_length: int = 64     # random tokens repeated once: 2 x repeat_length (capped at n_ctx)
    batch: int = 16
    icl_early: int = 50         # ICL score = loss at the last position - loss at this one
    icl_windows: int = 64

    def __post_init__(self) -> None:
        for key in ("repeat_length", "batch", "icl_windows"):
            _require("monitors", key, getattr(self, key), getattr(self, key) >= 2, ">= 2")
        _require("monitors", "icl_early", self.icl_early, self.icl_early >= 0, ">= 0")


@dataclasses.dataclass
class SamplerParams:
    """RMSProp-SGLD settings (Lee et al. 2025): eps, n*beta, gamma, chains and draws."""
    lr: float = 1e-6                 # eps
    nbeta: float = 1000.0            # n * beta
    localization: float = 10000.0    # gamma
    preconditioned: bool = True      # False: plain SGLD
    rms_alpha: float = 0.1           # eps_hat = eps / (sqrt(V) + rms_alpha)
    rms_beta: float = 0.99           # V <- b V + (1 - b) g^2
    rms_adapt: str = "burn_in"       # burn_in: V adapted during burn-in, then frozen (unbiased);
                                     # every_step: Lee et al.'s form (biased: V depends on w)
    chains: int = 2
    burn_in: int = 50
    draws: int = 100
    thin: int = 1                    # steps between draws
    batch_size: int = 8              # windows per chain per step
    obs_every: int = 1               # observables at every k-th draw
    token_level: bool = False        # also record per-token losses of the observables
    init_batches: int = 8
    paired: bool = True              # also score w* on each draw's batch (a control variate for the LLC)
    divergence_factor: float = 5.0   # stop when a loss exceeds this x the loss at w*
    check_every: int = 10            # steps between divergence checks
    n_pairs: int = 100               # pairs whose two versions are observables (0: all)
    shift_windows: int = 8           # windows of sampling and of general code scored as data shifts
    checkpoints: list[int] = dataclasses.field(default_factory=lambda: [0, 2000])  # steps to sample
    checks: bool = True              # re-sample the last checkpoint at eps/2 and with another seed

    def __post_init__(self) -> None:
        for key in ("lr", "nbeta", "divergence_factor"):
            _require("sampler", key, getattr(self, key), getattr(self, key) > 0, "> 0")
        _require("sampler", "localization", self.localization, self.localization >= 0, ">= 0")
        for key in ("chains", "draws", "thin", "batch_size", "obs_every",
                    "init_batches", "check_every", "shift_windows"):
            _require("sampler", key, getattr(self, key), getattr(self, key) >= 1, ">= 1")
        _require("sampler", "burn_in", self.burn_in, self.burn_in >= 0, ">= 0")
        _require("sampler", "n_pairs", self.n_pairs, self.n_pairs >= 0, ">= 0")
        _require("sampler", "rms_beta", self.rms_beta, 0 <= self.rms_beta < 1, "0 <= b < 1")
        _require("sampler", "rms_alpha", self.rms_alpha, self.rms_alpha > 0, "> 0")
        _require("sampler", "rms_adapt", self.rms_adapt, self.rms_adapt in ("burn_in", "every_step"),
                 "burn_in | every_step")
        if self.rms_adapt == "burn_in":
            _require("sampler", "burn_in", self.burn_in, self.burn_in >= 1,
                     ">= 1 with rms_adapt: burn_in (the preconditioner is estimated during burn-in; "
                     "rms_adapt: every_step needs none)")

    @property
    def steps(self) -> int:
        return self.burn_in + self.draws * self.thin


@dataclasses.dataclass
class InfluenceParams:
    bootstrap: int = 500             # problem-level resamples for block-aggregate intervals
    level: float = 0.9               # interval coverage
    pearson: bool = True             # block aggregates of the Pearson form (else covariance)

    def __post_init__(self) -> None:
        _require("influence", "bootstrap", self.bootstrap, self.bootstrap >= 10, ">= 10")
        _require("influence", "level", self.level, 0 < self.level < 1, "0 < level < 1")


@dataclasses.dataclass
class SusceptibilityParams:
    bootstrap: int = 300             # blocked-bootstrap resamples for the intervals
    blocks: int = 4                  # contiguous blocks of draws per chain
    umap_neighbors: int = 15
    observable: str = "restricted_loss"  # phi of heads/MLPs: restricted_loss (rllc chains) | output_norm

    def __post_init__(self) -> None:
        _require("susceptibility", "observable", self.observable,
                 self.observable in ("restricted_loss", "output_norm"), "restricted_loss or output_norm")
        _require("susceptibility", "bootstrap", self.bootstrap, self.bootstrap >= 10, ">= 10")
        _require("susceptibility", "blocks", self.blocks, self.blocks >= 1, ">= 1")
        _require("susceptibility", "umap_neighbors", self.umap_neighbors, self.umap_neighbors >= 2, ">= 2")


@dataclasses.dataclass
class RLLCParams:
    """Refined LLCs (Wang et al. 2025): sampling restricted to one component, or on other data."""
    checkpoints: list[int] = dataclasses.field(default_factory=lambda: [16, 256, 2000])
    draws: int = 40
    burn_in: int = 20
    chains: int = 2
    batch_size: int = 4
    data_refined: bool = True        # also the whole-model LLC sampled on correct / on buggy code
    clusters: int = 3                # clusters of heads by their rLLC trajectories
    obs_every: int = 4               # observables (for restricted-loss susceptibilities) at every k-th draw

    def __post_init__(self) -> None:
        for key in ("draws", "chains", "batch_size", "clusters", "obs_every"):
            _require("rllc", key, getattr(self, key), getattr(self, key) >= 1, ">= 1")
        _require("rllc", "burn_in", self.burn_in, self.burn_in >= 0, ">= 0")


@dataclasses.dataclass
class ProbeParams:
    max_pairs: int = 40              # held-out pairs patched per checkpoint
    share: float = 0.1               # a component carries a significant share when its lower bound passes this
    min_gap: float = 0.02            # pairs whose correct and buggy metrics differ less (nats) are not patched
    head_threshold: float = 0.3      # score a head needs for its class in the taxonomy
    windows: int = 8                 # general-code windows in the trajectory probe set
    turn_degrees: float = 60.0       # bend of the trajectory that marks a turning point

    def __post_init__(self) -> None:
        _require("probes", "max_pairs", self.max_pairs, self.max_pairs >= 1, ">= 1")
        _require("probes", "windows", self.windows, self.windows >= 1, ">= 1")
        _require("probes", "turn_degrees", self.turn_degrees, 0 < self.turn_degrees < 180, "0 < x < 180")


@dataclasses.dataclass
class SAEParams:
    architecture: str = "topk"       # topk | standard (ReLU + L1)
    layer: int = -1                  # residual stream after this block; -1: the middle block
    expansion: int = 8               # d_sae = expansion x d_model
    k: int = 32                      # topk
    l1: float = 5.0                  # standard
    max_steps: int = 2000            # training stops at a plateau of held-out explained variance, or here
    min_steps: int = 500
    eval_every: int = 100            # held-out explained variance every this many steps
    plateau_window: int = 3          # plateau: the best EV of the last `window` evaluations beats the best
    plateau_tol: float = 0.005       #   EV before them by less than `tol`
    batch_size: int = 1024
    buffer_windows: int = 32         # activations are buffered this many windows at a time
    lr: float = 1e-3
    read: str = "final"              # final token | pooled over the solution body
    dense_factor: float = 4.0        # dense: firing on > factor x L0 / d_sae of corpus tokens (L0 = k for topk)
    top_k: int = 5
    bootstrap: int = 300
    steer_alpha: float = 1.0         # steering strength, in units of the median residual norm
    quality_windows: int = 16
    checkpoints: list[int] = dataclasses.field(default_factory=lambda: [0, 16, 64, 256, 910, 2000])

    def __post_init__(self) -> None:
        _require("sae", "architecture", self.architecture, self.architecture in ("topk", "standard"),
                 "'topk' or 'standard'")
        _require("sae", "read", self.read, self.read in ("final", "pooled"), "'final' or 'pooled'")
        for key in ("expansion", "k", "max_steps", "min_steps", "eval_every", "plateau_window", "batch_size",
                    "buffer_windows", "top_k", "quality_windows"):
            _require("sae", key, getattr(self, key), getattr(self, key) >= 1, ">= 1")
        _require("sae", "min_steps", self.min_steps, self.min_steps <= self.max_steps, f"<= max_steps = {self.max_steps}")
        _require("sae", "plateau_tol", self.plateau_tol, self.plateau_tol >= 0, ">= 0")
        _require("sae", "dense_factor", self.dense_factor, self.dense_factor > 1,
                 "> 1 (a latent at the expected density L0 / d_sae is not dense)")
        _require("sae", "lr", self.lr, self.lr > 0, "> 0")
        _require("sae", "bootstrap", self.bootstrap, self.bootstrap >= 10, ">= 10")


@dataclasses.dataclass
class CalibrationParams:
    """A series with a known transition: in-context Markov chains (Edelman et al. 2024, arXiv 2402.11004)."""
    k: int = 4                       # states (tokens 0..k-1)
    alpha: float = 1.0               # Dirichlet concentration of each sequence's transition rows
    train_sequences: int = 50000     # one sequence of n_ctx + 1 tokens per window
    val_sequences: int = 512
    n_ctx: int = 128
    n_layer: int = 2
    n_head: int = 2
    d_model: int = 64
    d_mlp: int = 256                 # used only when attn_only is false
    attn_only: bool = True
    max_steps: int = 1600
    batch_size: int = 32
    lr: float = 3e-3
    min_lr: float = 3e-4
    warmup_steps: int = 50
    weight_decay: float = 0.0
    checkpoint_every: int = 50       # checkpoints at 0, every, 2 x every, ..., max_steps
    val_windows: int = 64
    monitor_sequences: int = 64      # validation sequences the attention monitors read
    observable_sequences: int = 32   # validation sequences (and their shuffles) the SGLD instruments observe
    bootstrap: int = 200             # resamples for the BIF-block and susceptibility intervals
    min_rise: float = 0.1            # a transition: the final max induction score exceeds chance by this
    boundary_level: float = 0.99     # a curve changes where a hinge beats a line at this level
    tolerance_checkpoints: int = 1   # an instrument's change within this many checkpoints of t* is a hit
    sampler: SamplerParams = dataclasses.field(default_factory=SamplerParams)  # SGLD on the calibration series

    def __post_init__(self) -> None:
        _require("calibration", "k", self.k, 2 <= self.k <= 65535, "2..65535 (ids are stored as uint16)")
        _require("calibration", "alpha", self.alpha, self.alpha > 0, "> 0")
        for key in ("train_sequences", "val_sequences", "n_layer", "n_head", "d_model", "d_mlp", "max_steps",
                    "batch_size", "checkpoint_every", "val_windows", "monitor_sequences", "observable_sequences"):
            _require("calibration", key, getattr(self, key), getattr(self, key) >= 1, ">= 1")
        _require("calibration", "n_ctx", self.n_ctx, self.n_ctx >= 2, ">= 2")
        _require("calibration", "d_model", self.d_model, self.d_model % self.n_head == 0,
                 f"a multiple of calibration.n_head={self.n_head}")
        _require("calibration", "lr", self.lr, 0 < self.lr < 1, "0 < lr < 1")
        _require("calibration", "min_lr", self.min_lr, 0 <= self.min_lr <= self.lr, "0 <= min_lr <= calibration.lr")
        _require("calibration", "warmup_steps", self.warmup_steps, 0 <= self.warmup_steps < self.max_steps,
                 "0 <= warmup_steps < calibration.max_steps")
        _require("calibration", "weight_decay", self.weight_decay, self.weight_decay >= 0, ">= 0")
        _require("calibration", "monitor_sequences", self.monitor_sequences,
                 self.monitor_sequences <= self.val_sequences, f"<= calibration.val_sequences = {self.val_sequences}")
        _require("calibration", "observable_sequences", self.observable_sequences,
                 2 <= self.observable_sequences <= self.val_sequences,
                 f"2 <= x <= calibration.val_sequences = {self.val_sequences}")
        _require("calibration", "bootstrap", self.bootstrap, self.bootstrap >= 10, ">= 10")
        _require("calibration", "boundary_level", self.boundary_level, 0 < self.boundary_level < 1, "0 < x < 1")
        _require("calibration", "min_rise", self.min_rise, 0 <= self.min_rise < 1, "0 <= x < 1")
        _require("calibration", "tolerance_checkpoints", self.tolerance_checkpoints, self.tolerance_checkpoints >= 0,
                 ">= 0")

    @property
    def checkpoint_steps(self) -> list[int]:
        return sorted(set(range(0, self.max_steps, self.checkpoint_every)) | {self.max_steps})


@dataclasses.dataclass
class Params:
    profile: str = "default"   # the conf/profile/ composed into this file
    seed: int = 0
    sandbox: SandboxParams = dataclasses.field(default_factory=SandboxParams)
    pairs: PairsParams = dataclasses.field(default_factory=PairsParams)
    corpus: CorpusParams = dataclasses.field(default_factory=CorpusParams)
    model: ModelParams = dataclasses.field(default_factory=ModelParams)
    device: DeviceParams = dataclasses.field(default_factory=DeviceParams)
    train: TrainParams = dataclasses.field(default_factory=TrainParams)
    monitors: MonitorParams = dataclasses.field(default_factory=MonitorParams)
    sampler: SamplerParams = dataclasses.field(default_factory=SamplerParams)
    influence: InfluenceParams = dataclasses.field(default_factory=InfluenceParams)
    sae: SAEParams = dataclasses.field(default_factory=SAEParams)
    susceptibility: SusceptibilityParams = dataclasses.field(default_factory=SusceptibilityParams)
    rllc: RLLCParams = dataclasses.field(default_factory=RLLCParams)
    probes: ProbeParams = dataclasses.field(default_factory=ProbeParams)
    calibration: CalibrationParams = dataclasses.field(default_factory=CalibrationParams)

    def __post_init__(self) -> None:
        _require("", "seed", self.seed, 0 <= self.seed < 2**31, "0 <= seed < 2**31")
        _require("monitors", "icl_early", self.monitors.icl_early, self.monitors.icl_early < self.model.n_ctx - 1,
                 f"< model.n_ctx - 1 = {self.model.n_ctx - 1}")
        _require("monitors", "icl_early", self.monitors.icl_early, self.monitors.icl_early < self.calibration.n_ctx - 1,
                 f"< calibration.n_ctx - 1 = {self.calibration.n_ctx - 1} (the calibration monitors' ICL score)")
        for section in ("sampler", "sae", "rllc"):  # one meaning everywhere: the steps named, never "all"
            steps = getattr(self, section).checkpoints
            _require(section, "checkpoints", steps, len(steps) >= 1,
                     "a non-empty list of checkpoint steps (e.g. [0, 40]; list every step to use them all)")
        n_layer = self.model.n_layer if self.model.source == "own" else 10**6  # an HF model's depth is checked on load
        _require("sae", "layer", self.sae.layer, -1 <= self.sae.layer < n_layer, f"-1 (middle) or 0..{n_layer - 1}")

    def sae_layer_for(self, n_layers: int) -> int:
        """The block whose residual output the SAEs read: sae.layer, or the middle one (-1)."""
        layer = (n_layers - 1) // 2 if self.sae.layer == -1 else self.sae.layer
        if layer >= n_layers:
            raise ConfigError(f"params: sae.layer = {layer}, but the model has {n_layers} blocks (0..{n_layers - 1})")
        return layer


def check_keys(raw: Any, cls: type = Params, where: str = "") -> None:
    """Fail on a key that no dataclass field has, naming the nearest one (difflib)."""
    if not isinstance(raw, dict):
        return
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key, value in raw.items():
        full = f"{where}{key}"
        if key not in fields:
            near = difflib.get_close_matches(str(key), fields, n=1, cutoff=0.6)
            hint = f"did you mean {where}{near[0]}?" if near else f"known keys here: {', '.join(fields)}"
            raise ConfigError(f"params: unknown key {full}; {hint}")
        if dataclasses.is_dataclass(fields[key].default_factory):  # a nested section
            check_keys(value, fields[key].default_factory, f"{full}.")


def _validated(source: str, *configs) -> Params:
    """Params from omegaconf `configs` merged in order, with unknown keys and bad values named."""
    try:
        raw = OmegaConf.to_container(OmegaConf.merge(*configs))
        check_keys(raw)
        return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(Params), raw))
    except OmegaConfBaseException as exc:
        raise ConfigError(f"{source}: {exc}") from None


CONF = Path(__file__).resolve().parents[2] / "conf"


def compose(profile: str = "default", overrides: list[str] | None = None, conf: str | Path = CONF) -> str:
    """params.yaml for `profile` plus Hydra `key=value` overrides, validated, as YAML: the same
    composition DVC's Hydra integration writes for ``dvc exp run -S profile=NAME -S key=value``."""
    from hydra import compose as hydra_compose, initialize_config_dir
    from hydra.errors import HydraException
    conf = Path(conf).resolve()
    known = sorted(p.stem for p in (conf / "profile").glob("*.yaml"))
    if profile not in known:
        raise ConfigError(f"no profile {profile!r} in {conf / 'profile'} (have {known})")
    try:
        with initialize_config_dir(config_dir=str(conf), version_base=None):
            cfg = hydra_compose(config_name="config", overrides=[f"profile={profile}", *(overrides or [])])
    except HydraException as exc:
        raise ConfigError(f"{conf}: {exc}") from None
    _validated(f"{conf / 'profile' / profile}.yaml", cfg)
    return OmegaConf.to_yaml(cfg)


def load_params(path: str | Path = "params.yaml", overrides: list[str] | None = None) -> Params:
    """Read params.yaml (plus `key=value` overrides) into validated dataclasses."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path} not found: run from the project root or pass --params PATH")
    return _validated(str(path), OmegaConf.load(path), OmegaConf.from_dotlist(overrides or []))


def as_dict(obj: Any) -> dict:
    return dataclasses.asdict(obj)


def params_hash(obj: Any) -> str:
    """Stable short hash of a parameter section (for run tags and cache keys)."""
    blob = json.dumps(obj, sort_keys=True, default=dataclasses.asdict).encode()
    return hashlib.sha256(blob).hexdigest()[:12]
