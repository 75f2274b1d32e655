"""The report page from small fake metrics files and figures (no pipeline): header provenance,
headline with intervals and verdicts, a caption under every figure, reasons for missing and
empty figures, no raw None/{}/[] text; and the same page in headless Chromium."""
import argparse
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import matplotlib
import pytest

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from emergence.config import load_params  # noqa: E402
from emergence.stages import report  # noqa: E402
from emergence.tracking.wandb import provenance  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
BLOCKS = ("correct_to_correct", "correct_to_buggy", "buggy_to_buggy")

INFLUENCE = {"final_step": 2000, "final_llc": 149.05, "final_llc_lo": 147.6, "final_llc_hi": 150.4,
             "final_llc_se": 0.8, "final_llc_negative": False, "llc_negative_steps": [],
             "final_obs_rhat": 1.02, "final_obs_ess": 61.0, "final_common_mode_share": 0.41, "final_common_mode_alignment": 0.93,
             **{f"final_{b}{v}{e}": x for b, x in zip(BLOCKS, (-0.117, -0.113, -0.089)) for v in ("", "_mode_removed")
                for e in ("", "_lo", "_hi")},
             "sign_flips": {"correct_to_buggy": []}, "peaks": {"llc": [], "correct_to_buggy": [256]},
             "bootstrap_resamples": 500, "bootstrap_skipped": {},
             "checks": {"step": 2000, "llc": 149.05, "llc_half_lr": 148.0, "llc_half_lr_lo": 146.0,
                        "llc_half_lr_hi": 150.0, "step_size_tolerance": 2.4, "step_size_ok": True,
                        "seed_values_checked": 7, "seed_outside_interval": {}, "seed_ok": True}}
EMERGENCE = {"best_predictor": "top_k", "selected_on": "validation", "final_accuracy": 0.581,
             "final_accuracy_lo": 0.52, "final_accuracy_hi": 0.64, "final_auroc": 0.589,
             "emergence_step": "not resolved", "shape": "gradual", "bootstrap_skipped": 0}
SUSCEPTIBILITY = {"observable": "restricted_loss", "final_step": 2000, "final_opposite": ["L1H0", "L0H2"],
                  "final_opposite_significant": ["L1H0"], "opposite_from_step": {},
                  "sae_opposite_significant": {"16": [], "2000": ["SAE3"]}}
CALIBRATION = {"t_star": 700, "induction_chance": 0.283, "tolerance_checkpoints": 1,
               "instruments": {"max_induction": {"step": 700, "verdict": "hit"},
                               "val_loss": {"step": 100, "verdict": "miss"},
                               "llc": {"step": None, "verdict": "no change"}}}
CALIBRATION_CURVE = [{"step": s, "max_induction": min(0.3 + s / 1000, 0.8), "val_loss": 1.4 - s / 5000}
                     for s in range(0, 1050, 50)]
RLLC = {"final_step": 2000, "final": {"L0": [60.8, 58.0, 63.5], "L1H0": [1.2, -0.4, 2.9]}, "final_negative": [],
        "head_clusters": {"L1H0": 0}}


def _png(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(2, 2))
    ax.plot([0, 1], [0, 1])
    fig.savefig(path)
    plt.close(fig)


@pytest.fixture
def fake(tmp_path):
    art = tmp_path / "artifacts"
    for rel, m in (("influence/metrics.json", INFLUENCE), ("emergence/metrics.json", EMERGENCE),
                   ("susceptibility/metrics.json", SUSCEPTIBILITY), ("rllc/metrics.json", RLLC),
                   ("calibration/metrics.json", CALIBRATION), ("calibration/monitors/curve.json", CALIBRATION_CURVE),
                   ("calibration/llc/curve.json", [{"step": r["step"], "llc": 10.0} for r in CALIBRATION_CURVE])):
        (art / rel).parent.mkdir(parents=True, exist_ok=True)
        (art / rel).write_text(json.dumps(m))
    for rel in ("influence/llc.png", "influence/heatmaps/bif_step_16.png", "influence/heatmaps/bif_step_2000.png",
                "emergence/accuracy.png", "susceptibility/heatmaps/step_2000_sae.png"):
        _png(art / rel)
    (art / "influence/blocks.png").write_bytes(b"")  # an empty figure
    report.main(argparse.Namespace(params="params.yaml", artifacts=str(art), out=str(tmp_path / "report")))
    return tmp_path / "report" / "index.html"


def visible_text(page: str) -> str:
    page = re.sub(r'src="data:[^"]*"', "", page)
    page = re.sub(r"<(script|style)>.*?</\1>", "", page, flags=re.S)
    return re.sub(r"<[^>]+>", " ", page)


def test_page_has_provenance_headline_captions_and_reasons(fake):
    page = fake.read_text()
    text = visible_text(page)
    prov = provenance(load_params("params.yaml"))
    assert f"commit {prov['commit']}" in text and f"params {prov['params']}" in text and f"data {prov['data']}" in text
    head = re.search(r"<p class='headline'>(.*?)</p>", page).group(1)
    assert "final LLC 149.1 [147.6, 150.4] at step 2000" in head
    assert "correct-&gt;buggy -0.113 [-0.113, -0.113]" in head
    assert "accuracy 0.581 [0.520, 0.640]" in head and "not resolved" in head
    assert "1 component(s) respond significantly" in head and "L1H0" in head
    figures = re.findall(r"<figure>(.*?)</figure>", page)
    assert len(figures) == 6  # the calibration panel and every non-empty file, each with a caption
    assert page.index("Calibration: a known transition") < page.index("<h2>Summary</h2>")
    assert "Ground truth t* = 700" in text and "halfway between chance (0.283)" in text
    assert re.search(r"<td>max_induction</td><td>700</td><td>hit</td>", page)
    assert re.search(r"<td>llc</td><td>none</td><td>no change</td>", page)
    for fig in figures:
        cap = re.search(r"<figcaption>(.*?)</figcaption>", fig).group(1)
        assert len(cap) > 40 and ".png" not in cap
    assert "at step 16, correct first" in page and "SAE features" in page
    assert "blocks.png: empty file; re-run `dvc repro -f influence`" in text
    assert "artifacts/probes/taxonomy.png was not written: run `dvc repro probes`" in text
    assert "Sampler checks at step 2000" in text


def test_page_has_no_raw_python_values(fake):
    text = visible_text(fake.read_text())
    assert not [raw for raw in ("None", "{}", "[]", "nan") if raw in text]


def test_missing_key_names_the_file_and_the_stage(tmp_path):
    art = tmp_path / "artifacts"
    (art / "emergence").mkdir(parents=True)
    (art / "emergence/metrics.json").write_text(json.dumps({k: v for k, v in EMERGENCE.items()
                                                            if k != "final_accuracy_lo"}))
    line = report.headline(art)
    assert "emergence/metrics.json lacks 'final_accuracy_lo': re-run `dvc repro emergence`" in line
    assert "influence/metrics.json missing: run `dvc repro influence`" in line


def test_fake_page_renders_in_headless_chromium(fake, tmp_path):
    if CHROMIUM is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed: `make install` installs it (Debian package chromium)")
        pytest.skip("chromium not installed (make install installs it)")
    flags = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=5000"]
    dom = subprocess.run(flags + ["--dump-dom", fake.as_uri()], capture_output=True, text=True, timeout=120)
    done, total = map(int, dom.stdout.split('data-rendered="')[1].split('"')[0].split("/"))
    assert total == 6 and done == total
    assert not [raw for raw in ("None", "{}", "[]") if raw in visible_text(dom.stdout)]
