"""Typed experiment parameters, loaded from params.yaml and validated at start-up.

Each section of params.yaml is a dataclass; omegaconf checks types and unknown keys,
and ``__post_init__`` checks ranges. A bad value fails with its full key, the value
and what is allowed, before any work starts.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException


class ConfigError(ValueError):
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


@dataclasses.dataclass
class PairsParams:
    max_per_problem: int = 3
    candidates_per_problem: int = 10
    min_pairs: int = 150
    extra_files: list[str] = dataclasses.field(default_factory=list)

    def __post_init__(self) -> None:
        _require("pairs", "max_per_problem", self.max_per_problem, self.max_per_problem >= 1, ">= 1")
        _require("pairs", "candidates_per_problem", self.candidates_per_problem,
                 self.candidates_per_problem >= self.max_per_problem, ">= pairs.max_per_problem")
        _require("pairs", "min_pairs", self.min_pairs, self.min_pairs >= 0, ">= 0")


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
class Params:
    seed: int = 0
    sandbox: SandboxParams = dataclasses.field(default_factory=SandboxParams)
    pairs: PairsParams = dataclasses.field(default_factory=PairsParams)
    corpus: CorpusParams = dataclasses.field(default_factory=CorpusParams)

    def __post_init__(self) -> None:
        _require("", "seed", self.seed, 0 <= self.seed < 2**31, "0 <= seed < 2**31")


def load_params(path: str | Path = "params.yaml", overrides: list[str] | None = None) -> Params:
    """Read params.yaml (plus `key=value` overrides) into validated dataclasses."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path} not found: run from the project root or pass --params PATH")
    try:
        merged = OmegaConf.merge(OmegaConf.structured(Params), OmegaConf.load(path),
                                 OmegaConf.from_dotlist(overrides or []))
        return OmegaConf.to_object(merged)
    except OmegaConfBaseException as exc:
        raise ConfigError(f"{path}: {exc}") from None


def as_dict(obj: Any) -> dict:
    return dataclasses.asdict(obj)


def params_hash(obj: Any) -> str:
    """Stable short hash of a parameter section (for run tags and cache keys)."""
    blob = json.dumps(as_dict(obj), sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:12]
