"""Parameters are typed and validated at load, naming the key."""
from pathlib import Path

import pytest

from emergence.config import ConfigError, load_params

ROOT_PARAMS = "params.yaml"
ROOT = Path(__file__).resolve().parents[1]


def test_defaults_load():
    p = load_params(ROOT_PARAMS)
    assert p.pairs.max_per_problem >= 1 and p.corpus.vocab_size <= 65535


@pytest.mark.parametrize("override, key", [
    ("corpus.vocab_size=70000", "corpus.vocab_size"),
    ("pairs.max_per_problem=0", "pairs.max_per_problem"),
    ("sandbox.memory_mb=10", "sandbox.memory_mb"),
    ("seed=-1", "seed"),
])
def test_invalid_values_name_the_key(override, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_params(ROOT_PARAMS, [override])


def test_wrong_type_and_unknown_key_fail():
    with pytest.raises(ConfigError, match="vocab_size"):
        load_params(ROOT_PARAMS, ["corpus.vocab_size=lots"])
    with pytest.raises(ConfigError, match="vocabsize"):
        load_params(ROOT_PARAMS, ["corpus.vocabsize=10"])


def test_missing_file():
    with pytest.raises(ConfigError, match="not found"):
        load_params("nope.yaml")


@pytest.mark.parametrize("profile", sorted((ROOT / "conf" / "profiles").glob("*.yaml")), ids=lambda p: p.stem)
def test_every_profile_merges_into_valid_params(profile, tmp_path):
    from emergence.config import load_params, merged_yaml
    (tmp_path / "params.yaml").write_text(merged_yaml(ROOT / "params.yaml", profile))
    p = load_params(tmp_path / "params.yaml")
    assert p.model.source in ("own", "hf")


@pytest.mark.parametrize("override, typo, suggestion", [
    ("corpus.vocabsize=10", "corpus.vocabsize", "corpus.vocab_size"),
    ("sampler.nbta=3", "sampler.nbta", "sampler.nbeta"),
    ("train.checkpoints.log_untl=3", "train.checkpoints.log_untl", "train.checkpoints.log_until"),
    ("samplr.lr=1", "samplr", "sampler"),
])
def test_a_typo_names_the_nearest_key(override, typo, suggestion):
    with pytest.raises(ConfigError, match=f"unknown key {typo}; did you mean {suggestion}"):
        load_params(ROOT_PARAMS, [override])


def test_a_typo_in_a_profile_is_named(tmp_path):
    from emergence.config import merged_yaml
    (tmp_path / "typo.yaml").write_text("sae:\n  expanson: 4\n")
    with pytest.raises(ConfigError, match="did you mean sae.expansion"):
        merged_yaml(ROOT / "params.yaml", tmp_path / "typo.yaml")


@pytest.mark.parametrize("section", ["sampler", "sae", "rllc"])
def test_an_empty_checkpoint_list_is_rejected_in_every_section(section):
    """`[]` has one meaning nowhere: every list of checkpoint steps must name its steps."""
    with pytest.raises(ConfigError, match=rf"{section}\.checkpoints = \[\] is invalid.*non-empty list"):
        load_params(ROOT_PARAMS, [f"{section}.checkpoints=[]"])
