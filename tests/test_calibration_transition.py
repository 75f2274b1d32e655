"""The calibration series at its default training settings: the induction head forms, the monitors
find t*, and every instrument's verdict against it is made and recorded. Slow (the whole default
training of the calibration series, with a shorter sampler): `make test-slow` runs it."""
import argparse
import json

import pytest
from omegaconf import OmegaConf

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]
VERDICTS = {"hit", "miss", "no change"}


def test_default_calibration_forms_the_induction_head_and_every_instrument_gets_a_verdict(tmp_path, monkeypatch):
    from emergence.config import compose
    from emergence.stages import calibration
    params = OmegaConf.create(compose("default"))
    c = params.calibration
    c.sampler.update(dict(checkpoints=[0, 300, 500, 600, 700, 800, 900, 1200, 1600], draws=20, burn_in=10))
    c.bootstrap = 50
    OmegaConf.save(params, tmp_path / "params.yaml")
    monkeypatch.setenv("WANDB_MODE", "disabled")
    ns = dict(params=str(tmp_path / "params.yaml"))
    d, ck, mon, inst = (tmp_path / name for name in ("data", "ckpt", "mon", "instruments"))
    calibration.data(argparse.Namespace(out=str(d), **ns))
    calibration.train(argparse.Namespace(data=str(d), out=str(ck), report=str(tmp_path / "train"), **ns))
    calibration.monitors(argparse.Namespace(checkpoints=str(ck), data=str(d), out=str(mon), **ns))
    calibration.sample(argparse.Namespace(checkpoints=str(ck), data=str(d), out=str(tmp_path / "traces"),
                                          report=str(inst), **ns))
    calibration.verdicts(argparse.Namespace(monitors=str(mon), instruments=str(inst), out=str(tmp_path), **ns))
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    print(json.dumps({k: (v["step"], v["verdict"]) for k, v in metrics["instruments"].items()}))
    t_star = metrics["t_star"]
    curve = json.loads((mon / "curve.json").read_text())
    assert t_star is not None and curve[0]["step"] < t_star < curve[-1]["step"]      # a transition inside the run
    assert curve[-1]["max_induction"] > metrics["induction_chance"] + c.min_rise     # the head formed
    refs = json.loads((d / "references.json").read_text())["mean"]
    assert curve[-1]["val_loss"] < refs["unigram"]                                   # past the unigram plateau
    assert metrics["instruments"]["max_induction"]["step"] is not None               # the monitor sees a change
    checkpoint_steps = [r["step"] for r in curve]
    for name, v in metrics["instruments"].items():
        assert v["verdict"] in VERDICTS, (name, v)
        assert v["step"] is None or v["step"] in checkpoint_steps, (name, v)
