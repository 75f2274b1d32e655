"""Stage `report`: one static, self-contained HTML page with every figure and a summary.

Figures are embedded as data URIs (no network, no CDN); the page marks itself
``data-rendered="N/M"`` once its images have loaded, which the browser test reads.
"""
from __future__ import annotations

import base64
import html
import logging
import math
from pathlib import Path

from emergence.analysis import plots
from emergence.config import load_params
from emergence.io import read_json, write_text

log = logging.getLogger(__name__)

SECTIONS = [
    ("Training", ["train/loss_curves.png"]),
    ("Training-dynamics monitors (induction, previous-token, ICL)",
     ["monitors/prefix_matching.png", "monitors/previous_token.png", "monitors/icl.png"]),
    ("Experiment 1 - influence dynamics (BIF) and the LLC",
     ["influence/blocks.png", "influence/blocks_mode_removed.png", "influence/llc.png", "influence/heatmaps/*.png"]),
    ("Experiment 2 - emergence of correctness directions", ["emergence/accuracy.png"]),
    ("Experiment 3 - susceptibilities", ["susceptibility/heatmaps/*.png"]),
    ("Experiment 4 - embryology", ["susceptibility/umap_grid.png", "susceptibility/umap.gif"]),
    ("Refined LLCs", ["rllc/weight_refined.png", "rllc/data_refined.png"]),
    ("Mechanistic probes", ["probes/patching_over_training.png", "probes/logit_lens.png", "probes/taxonomy.png",
                            "probes/trajectory.png"]),
]

CHECK = """<script>
window.addEventListener('load', function () {
  var imgs = Array.from(document.images);
  var ok = imgs.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length;
  document.body.setAttribute('data-rendered', ok + '/' + imgs.length);
});
</script>"""


def _step_key(path: Path) -> tuple:
    digits = "".join(ch for ch in path.stem if ch.isdigit())
    return (int(digits) if digits else -1, path.name)


def figure_files(artifacts: Path, pattern: str) -> list[Path]:
    return sorted(artifacts.glob(pattern), key=_step_key)


def embed(path: Path) -> str:
    mime = "image/gif" if path.suffix == ".gif" else "image/png"
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<figure><img src="data:{mime};base64,{data}" alt="{html.escape(path.name)}"><figcaption>{html.escape(path.name)}</figcaption></figure>'


def text(v) -> str:
    """A metric as page text: None and empty collections as "none", NaN as "not resolved",
    lists joined by commas, dicts as "key: value; ..."."""
    if v is None or (isinstance(v, (list, dict)) and not v):
        return "none"
    if isinstance(v, float):
        return f"{v:.3g}" if math.isfinite(v) else "not resolved"
    if isinstance(v, list):
        return ", ".join(text(x) for x in v)
    if isinstance(v, dict):
        return "; ".join(f"{k}: {text(x)}" for k, x in v.items())
    return str(v)


def _interval(m, key: str, fmt: str = "+.3f") -> str:
    def one(v):
        return f"{v:{fmt}}" if math.isfinite(v) else "not resolved"
    return f"{one(m[key])} [{one(m[key + '_lo'])}, {one(m[key + '_hi'])}]"


def _training(m) -> str:
    return (f"Training reached val loss {m['val_loss']:.3f} (unigram baseline {m['unigram_val_loss']:.3f}); "
            f"at the last checkpoint the correct version of a pair has the lower loss for "
            f"{100 * m['pairs_correct_preferred']:.1f}% of pairs (mean gap {m['pairs_loss_gap']:+.4f} nats).")


def _monitors(m) -> str:
    return (f"Induction monitor: highest final prefix-matching score {m['final_max_prefix_matching']:.3f} "
            f"({m['top_induction_head']}); final ICL score {m['final_icl']:+.3f}.")


NEGATIVE = ("negative: the LLC interval lies below 0, so the checkpoint is not a local minimum of the "
            "sampling loss and has no learning coefficient (never counted as a peak)")


def _influence(m) -> str:
    blocks = "; ".join(f"{b}: {_interval(m, f'final_{b}')} raw, {_interval(m, f'final_{b}_mode_removed')} "
                       f"common mode removed" for b in ("correct_to_correct", "correct_to_buggy", "buggy_to_buggy"))
    flagged = f" ({NEGATIVE})" if m["final_llc_negative"] else ""
    return (f"Final LLC (step {m['final_step']}) {_interval(m, 'final_llc', '.1f')} (90% interval){flagged}; "
            f"checkpoints with a negative LLC: {text(m['llc_negative_steps'])}"
            f"{'' if flagged or not m['llc_negative_steps'] else ' (' + NEGATIVE + ')'}. "
            f"Common mode of the per-sample losses: {100 * m['final_common_mode_share']:.0f}% of their variance "
            f"(alignment with all-ones {m['final_common_mode_alignment']:.2f}). Final BIF blocks, mean [90% interval]: "
            f"{blocks}. BIF sign flips (intervals excluding 0 on both sides): {text(m['sign_flips'])}. Peaks "
            f"(interval above both neighbours'): {text(m['peaks'])}. Bootstrap resamples skipped (a block empty "
            f"in the resample) of {m['bootstrap_resamples']}: {text(m['bootstrap_skipped'])}.")


def _emergence(m) -> str:
    return (f"Correctness direction ({m['best_predictor']}): final held-out accuracy {m['final_accuracy']:.3f}, "
            f"AUROC {m['final_auroc']:.3f}; beats the lower baselines from step {text(m['emergence_step'])}; "
            f"shape: {m['shape']}.")


def _susceptibility(m) -> str:
    sae = {s: v for s, v in m["sae_opposite_significant"].items() if v}
    return (f"Susceptibilities, each observable unit with its own matrix, SVD and ranking. Heads/MLPs "
            f"(phi: {m['observable']}): components responding oppositely to correct and buggy code at step "
            f"{m['final_step']}: {text(m['final_opposite'])} (significant: {text(m['final_opposite_significant'])}); "
            f"persistently from: {text(m['opposite_from_step'])}. SAE features (phi: activation) with significant "
            f"opposite responses: {text(sae)}.")


def _probes(m) -> str:
    return (f"Patching ({m['patching_pairs']} pairs; skipped because the correct-buggy gap is below "
            f"{m['min_gap']} nats, by step: {text(m['pairs_skipped_small_gap'])}): top components "
            f"{text(m['patching_top'][:3])}; first checkpoint where a component carries a significant share: "
            f"{text(m['first_significant_step'])}; trajectory turning points {text(m['turning_points'])} "
            f"(LLC peaks {text(m['llc_peaks'])}).")


SUMMARIES = {"train/metrics.json": _training, "monitors/metrics.json": _monitors,
             "influence/metrics.json": _influence, "emergence/metrics.json": _emergence,
             "susceptibility/metrics.json": _susceptibility, "probes/metrics.json": _probes}


def summary_lines(artifacts: Path) -> list[str]:
    """Plain sentences from the metrics files that exist."""
    return [sentence(read_json(artifacts / rel)) for rel, sentence in SUMMARIES.items() if (artifacts / rel).exists()]


def training_figure(artifacts: Path) -> None:
    rows = read_json(artifacts / "train/curve.json")
    steps = [r["step"] for r in rows]
    fig = plots.curves(steps, {k: [r[k] for r in rows] for k in ("val_loss", "pairs_correct_loss", "pairs_buggy_loss")},
                       "validation loss and loss on the pairs", "loss (nats/token)")
    plots.save(fig, artifacts / "train/loss_curves.png")


def main(args) -> None:
    p = load_params(args.params)
    artifacts = Path(args.artifacts)
    if (artifacts / "train/curve.json").exists():
        training_figure(artifacts)
    parts = [f"<h1>emergence report</h1><p>model source: {html.escape(p.model.source)}; seed {p.seed}</p>",
             "<h2>Summary</h2><ul>" + "".join(f"<li>{html.escape(s)}</li>" for s in summary_lines(artifacts)) + "</ul>"]
    count = 0
    for title, patterns in SECTIONS:
        files = [f for pat in patterns for f in figure_files(artifacts, pat)]
        if files:
            parts.append(f"<h2>{html.escape(title)}</h2><div class='grid'>" + "".join(embed(f) for f in files) + "</div>")
            count += len(files)
    style = ("<style>body{font-family:sans-serif;margin:2em;max-width:1400px}"
             ".grid{display:flex;flex-wrap:wrap;gap:1em}figure{margin:0}img{max-width:640px}"
             "figcaption{font-size:11px;color:#555}</style>")
    page = f"<!doctype html><html><head><meta charset='utf-8'><title>emergence report</title>{style}</head>" \
           f"<body>{''.join(parts)}{CHECK}</body></html>"
    write_text(Path(args.out) / "index.html", page)
    log.info("report with %d figures written to %s", count, Path(args.out) / "index.html")
