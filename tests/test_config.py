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


@pytest.mark.parametrize("profile", sorted(p.stem for p in (ROOT / "conf" / "profile").glob("*.yaml")))
def test_every_profile_composes_into_valid_params(profile, tmp_path):
    from emergence.config import compose, load_params
    (tmp_path / "params.yaml").write_text(compose(profile))
    p = load_params(tmp_path / "params.yaml")
    assert p.profile == profile and p.model.source in ("own", "hf")


def test_params_yaml_is_the_default_composition_of_conf():
    """params.yaml is generated (`make params`): it may not drift from conf/config.yaml."""
    import yaml
    from emergence.config import compose
    assert yaml.safe_load((ROOT / "params.yaml").read_text()) == yaml.safe_load(compose("default"))


def test_composition_is_the_one_dvc_exp_run_writes(tmp_path):
    """`dvc exp run -S profile=smoke -S sampler.draws=9` composes with DVC's own Hydra call."""
    import yaml
    from dvc.utils.hydra import compose_and_dump
    from emergence.config import compose
    out = tmp_path / "params.yaml"
    compose_and_dump(out, str(ROOT / "conf"), None, "config", str(ROOT), ["profile=smoke", "sampler.draws=9"])
    assert yaml.safe_load(out.read_text()) == yaml.safe_load(compose("smoke", ["sampler.draws=9"]))
    assert yaml.safe_load(out.read_text())["sampler"]["draws"] == 9


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
    import shutil
    from emergence.config import compose
    conf = shutil.copytree(ROOT / "conf", tmp_path / "conf")
    (conf / "profile" / "typo.yaml").write_text("# @package _global_\nsae:\n  expanson: 4\n")
    with pytest.raises(ConfigError, match="did you mean sae.expansion"):
        compose("typo", conf=conf)
    with pytest.raises(ConfigError, match="no profile 'smok'.*smoke"):
        compose("smok", conf=conf)


@pytest.mark.parametrize("section", ["sampler", "sae", "rllc"])
def test_an_empty_checkpoint_list_is_rejected_in_every_section(section):
    """`[]` has one meaning nowhere: every list of checkpoint steps must name its steps."""
    with pytest.raises(ConfigError, match=rf"{section}\.checkpoints = \[\] is invalid.*non-empty list"):
        load_params(ROOT_PARAMS, [f"{section}.checkpoints=[]"])
