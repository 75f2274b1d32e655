"""Stage `report`: one static, self-contained HTML page: a header with the commit, params hash
and data version, a headline paragraph with the key results and their intervals, a summary
from every metrics file, and every figure with a caption saying what to look for (a missing
or empty figure replaced by the reason).

Figures are embedded as data URIs (no network, no CDN); the page marks itself
``data-rendered="N/M"`` once its images have loaded, which the browser test reads.
"""
from __future__ import annotations

import base64
import html
import io
import logging
import math
from pathlib import Path

from emergence.analysis import plots
from emergence.config import load_params
from emergence.analysis.dynamics import NOT_RESOLVED
from emergence.io import read_json, write_text
from emergence.tracking.wandb import provenance

log = logging.getLogger(__name__)

STAGES = {"train": "train_lm", "monitors": "monitors", "influence": "influence", "emergence": "emergence",
          "susceptibility": "susceptibility", "rllc": "rllc", "probes": "probes"}

# (pattern under artifacts/, what to look for; {step} is the checkpoint of a per-step figure)
SECTIONS = [
    ("Training", [
        ("train/loss_curves.png", "Validation loss should fall well below the unigram baseline; look for where the "
                                  "loss on buggy versions separates from the loss on correct versions.")]),
    ("Training-dynamics monitors (induction, previous-token, ICL)", [
        ("monitors/prefix_matching.png", "A sharp rise of a head's prefix-matching score is the induction-head "
                                         "transition; compare its step with the LLC and BIF changes below."),
        ("monitors/previous_token.png", "Previous-token heads should appear before the induction heads that use them."),
        ("monitors/icl.png", "In-context learning score (late-context minus early-context loss): its drop marks when "
                             "the model starts to use the context.")]),
    ("Experiment 1 - influence dynamics (BIF) and the LLC", [
        ("influence/blocks.png", "Mean BIF within and between correct and buggy code with 90% intervals: look for "
                                 "sign flips and peaks (vertical marks) and whether correct->buggy separates from "
                                 "the within-class blocks."),
        ("influence/blocks_mode_removed.png", "The same blocks with the common mode of all samples removed: "
                                              "structure that survives here is about correctness, not the loss "
                                              "moving as a whole."),
        ("influence/llc.png", "LLC per checkpoint with its 90% interval: rises and peaks mark developmental "
                              "stages; circled checkpoints have a negative LLC (not a local minimum)."),
        ("influence/heatmaps/*.png", "BIF (-Corr) between pair sequences at step {step}, correct first, then "
                                     "buggy: look for blocks (stronger correlation within a class than across).")]),
    ("Experiment 2 - emergence of correctness directions", [
        ("emergence/accuracy.png", "Held-out accuracy of the selected correctness direction against the baselines; "
                                   "the mark is the first step whose interval clears the lower baselines'.")]),
    ("Experiment 3 - susceptibilities", [
        ("susceptibility/heatmaps/*.png", "Susceptibility chi at step {step} of each component to correct, buggy "
                                          "and general data: opposite signs in the correct and buggy columns mean "
                                          "the component responds to correctness.")]),
    ("Experiment 4 - embryology", [
        ("susceptibility/umap_grid.png", "UMAP of the components' susceptibility profiles per checkpoint: clusters "
                                         "that split over training are components specialising."),
        ("susceptibility/umap.gif", "The same embedding animated over checkpoints.")]),
    ("Refined LLCs", [
        ("rllc/weight_refined.png", "LLC restricted to each component's weights: a component whose rLLC rises "
                                    "while the others stay flat is where new structure forms."),
        ("rllc/data_refined.png", "LLC on correct versus buggy code only: a gap means the loss landscape differs "
                                  "between them.")]),
    ("Mechanistic probes", [
        ("probes/patching_over_training.png", "Effect of patching each top component from the correct into the "
                                              "buggy version over training; the mark is the first step where one "
                                              "carries a significant share."),
        ("probes/logit_lens.png", "Share of pairs whose logit-lens readout at each layer already prefers the "
                                  "correct version: look for the layer and step where it passes 0.5."),
        ("probes/taxonomy.png", "Class of each attention head per checkpoint, one colour per class: look for "
                                "heads turning into induction or previous-token heads."),
        ("probes/trajectory.png", "Function-space trajectory (first two principal components over checkpoints): "
                                  "turns mark stage boundaries; compare them with the LLC peaks.")]),
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


def caption(template: str, path: Path) -> str:
    digits = "".join(ch for ch in path.stem if ch.isdigit())
    what = template.replace("{step}", digits or "?")
    return what + (" (SAE features, own colour scale)" if path.stem.endswith("_sae") else "")


def embed(path: Path, template: str) -> str:
    mime = "image/gif" if path.suffix == ".gif" else "image/png"
    data = base64.b64encode(path.read_bytes()).decode()
    return (f'<figure><img src="data:{mime};base64,{data}" alt="{html.escape(path.name)}">'
            f"<figcaption>{html.escape(caption(template, path))}</figcaption></figure>")


def missing_reason(pattern: str, p, empty: list[Path]) -> str:
    """Why a figure is not on the page, and what to do."""
    stage = STAGES[pattern.split("/")[0]]
    if pattern == "rllc/data_refined.png" and not p.rllc.data_refined:
        return "not computed: rllc.data_refined is false in params.yaml"
    if empty:
        return f"{', '.join(f.name for f in empty)}: empty file; re-run `dvc repro -f {stage}`"
    return f"artifacts/{pattern} was not written: run `dvc repro {stage}`"


def missing(pattern: str, template: str, reason: str) -> str:
    what = template.replace("at step {step}", "at each checkpoint")
    return (f"<figure class='missing'><p>{html.escape(what)}</p>"
            f"<figcaption>not shown: {html.escape(reason)}</figcaption></figure>")


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
            f"Mixing of the pair losses at the last checkpoint: R-hat {m['final_obs_rhat']:.2f}, ESS "
            f"{m['final_obs_ess']:.0f} (of the mean pair loss; the BIF intervals widen with it). "
            f"Common mode of the per-sample losses: {100 * m['final_common_mode_share']:.0f}% of their variance "
            f"(alignment with all-ones {m['final_common_mode_alignment']:.2f}). Final BIF blocks, mean [90% interval]: "
            f"{blocks}. BIF sign flips (intervals excluding 0 on both sides): {text(m['sign_flips'])}. Peaks "
            f"(interval above both neighbours'): {text(m['peaks'])}. Bootstrap resamples skipped (a block empty "
            f"in the resample) of {m['bootstrap_resamples']}: {text(m['bootstrap_skipped'])}."
            f"{_checks(m['checks']) if 'checks' in m else ''}")


def _checks(c) -> str:
    step = ("the LLC holds" if c["step_size_ok"] else "the LLC MOVES (sampler.lr too large)")
    seed = ("every value lies inside this seed's interval" if c["seed_ok"] else
            f"outside this seed's interval: {text(list(c['seed_outside_interval']))}")
    return (f" Sampler checks at step {c['step']}: at half the step size {step} ({c['llc_half_lr']:.1f} vs "
            f"{c['llc']:.1f}, tolerance {c['step_size_tolerance']:.1f}); with another seed {seed}.")


def _emergence_verdict(m) -> str:
    if m["emergence_step"] == NOT_RESOLVED:
        return f"not resolved: its interval never clears the lower baselines' (shape: {m['shape']})"
    return f"beats the lower baselines from step {m['emergence_step']} (shape: {m['shape']})"


def _emergence(m) -> str:
    return (f"Correctness direction ({m['best_predictor']}, selected on {m['selected_on']}): final held-out "
            f"accuracy {_interval(m, 'final_accuracy', '.3f')} (90% interval), AUROC {m['final_auroc']:.3f}; "
            f"emergence: {_emergence_verdict(m)}; bootstrap resamples skipped: {m['bootstrap_skipped']}.")


def _susceptibility_verdict(m) -> str:
    found = m["final_opposite_significant"]
    if found:
        return (f"{len(found)} component(s) respond significantly in opposite directions to correct and buggy "
                f"code at step {m['final_step']}: {text(found)}")
    return (f"no component responds significantly in opposite directions to correct and buggy code at step "
            f"{m['final_step']} (largest opposite responses, not significant: {text(m['final_opposite'])})")


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


def _rllc(m) -> str:
    final = "; ".join(f"{n} {v[0]:.1f} [{v[1]:.1f}, {v[2]:.1f}]" for n, v in m["final"].items())
    return (f"Refined LLCs at step {m['final_step']}, mean [90% interval]: {final}. Negative (not a local "
            f"minimum of that restricted loss): {text(m['final_negative'])}. Head clusters by rLLC trajectory: "
            f"{text(m['head_clusters'])}.")


SUMMARIES = {"train/metrics.json": _training, "monitors/metrics.json": _monitors,
             "influence/metrics.json": _influence, "emergence/metrics.json": _emergence,
             "susceptibility/metrics.json": _susceptibility, "rllc/metrics.json": _rllc,
             "probes/metrics.json": _probes}


def _sentence(artifacts: Path, rel: str, write) -> str | None:
    """`write(metrics)`, or why it cannot be written (None when the file is absent)."""
    if not (artifacts / rel).exists():
        return None
    try:
        return write(read_json(artifacts / rel))
    except KeyError as exc:
        return f"{rel} lacks {exc}: re-run `dvc repro {STAGES[rel.split('/')[0]]}`"


def summary_lines(artifacts: Path) -> list[str]:
    """Plain sentences from the metrics files that exist."""
    return [line for rel, write in SUMMARIES.items() if (line := _sentence(artifacts, rel, write))]


def _headline_llc(m) -> str:
    negative = " (negative: not a local minimum)" if m["final_llc_negative"] else ""
    blocks = ", ".join(f"{b.replace('_to_', '->')} {_interval(m, f'final_{b}')}"
                       for b in ("correct_to_correct", "correct_to_buggy", "buggy_to_buggy"))
    return (f"final LLC {_interval(m, 'final_llc', '.1f')}{negative} at step {m['final_step']}; "
            f"BIF blocks at that step: {blocks}")


def _headline_emergence(m) -> str:
    return (f"SAE correctness-direction accuracy {_interval(m, 'final_accuracy', '.3f')}, emergence "
            f"{_emergence_verdict(m)}")


def _headline_susceptibility(m) -> str:
    return "susceptibility: " + _susceptibility_verdict(m)


HEADLINE = {"influence/metrics.json": _headline_llc, "emergence/metrics.json": _headline_emergence,
            "susceptibility/metrics.json": _headline_susceptibility}


def headline(artifacts: Path) -> str:
    """The key results with their 90% intervals in one paragraph."""
    parts = [_sentence(artifacts, rel, write) or f"{rel} missing: run `dvc repro {STAGES[rel.split('/')[0]]}`"
             for rel, write in HEADLINE.items()]
    return "Key results (mean [90% interval]): " + "; ".join(parts) + "."


def training_figure(artifacts: Path) -> None:
    rows = read_json(artifacts / "train/curve.json")
    steps = [r["step"] for r in rows]
    fig = plots.curves(steps, {k: [r[k] for r in rows] for k in ("val_loss", "pairs_correct_loss", "pairs_buggy_loss")},
                       "validation loss and loss on the pairs", "loss (nats/token)")
    plots.save(fig, artifacts / "train/loss_curves.png")


def figures(artifacts: Path, p) -> tuple[list[str], int]:
    """Each section's figures with captions, a missing or empty one replaced by the reason."""
    parts, count = [], 0
    for title, entries in SECTIONS:
        items = []
        for pattern, template in entries:
            files = figure_files(artifacts, pattern)
            shown = [f for f in files if f.stat().st_size > 0]
            items += [embed(f, template) for f in shown]
            if not shown:
                items.append(missing(pattern, template, missing_reason(pattern, p, files)))
            count += len(shown)
        parts.append(f"<h2>{html.escape(title)}</h2><div class='grid'>{''.join(items)}</div>")
    return parts, count


CALIBRATION_CAPTION = ("Calibration series (in-context Markov chains, a known induction transition): every "
                       "instrument's curve scaled to [0, 1]; the dashed line is the ground truth t*, a diamond where "
                       "the change-point detector places that instrument's change. An instrument is trusted on the "
                       "code series below only as far as it finds t* here.")


def calibration(artifacts: Path) -> str:
    """The calibration panel: t*, each instrument's verdict, and the curves with their change points."""
    root = artifacts / "calibration"
    if not (root / "metrics.json").exists():
        return ("<h2>Calibration: a known transition</h2><p class='missing'>not run yet: "
                "`dvc repro calib_verdicts`</p>")
    m = read_json(root / "metrics.json")
    rows = read_json(root / "monitors/curve.json")
    steps = [r["step"] for r in rows]
    curves = {name: (steps, [r[name] for r in rows]) for name in m["instruments"] if name in rows[0]}
    if (root / "instruments/curve.json").exists():  # the SGLD instruments: LLC, BIF blocks, chi per head
        sampled = read_json(root / "instruments/curve.json")
        curves.update({name: ([r["step"] for r in sampled], [r[name] for r in sampled])
                       for name in m["instruments"] if name in sampled[0]})
        heads = read_json(root / "instruments/heads.json")
        for kind in ("chi", "rllc"):
            curves.update({name: ([r["step"] for r in heads if f"{kind}_{r['component']}" == name],
                                  [r[kind] for r in heads if f"{kind}_{r['component']}" == name])
                           for name in m["instruments"] if name.startswith(f"{kind}_")})
    found = {name: v["step"] for name, v in m["instruments"].items()}
    buffer = io.BytesIO()
    fig = plots.calibration_panel(curves, m["t_star"], found)
    fig.savefig(buffer, format="png", dpi=110)
    plots.plt.close(fig)
    image = base64.b64encode(buffer.getvalue()).decode()
    table = "".join(f"<tr><td>{html.escape(name)}</td><td>{text(v['step'])}</td><td>{html.escape(v['verdict'])}</td></tr>"
                    for name, v in m["instruments"].items())
    return (f"<h2>Calibration: a known transition</h2><p>Ground truth t* = {text(m['t_star'])}: the first "
            f"checkpoint where the strongest head's induction score on the data crosses halfway between chance "
            f"({m['induction_chance']:.3f}) and its final value. A verdict is a hit when the instrument's change "
            f"lies within {m['tolerance_checkpoints']} checkpoint(s) of t*.</p>"
            f"<table><tr><th>instrument</th><th>change at step</th><th>verdict</th></tr>{table}</table>"
            f"<figure><img src='data:image/png;base64,{image}' alt='calibration panel'>"
            f"<figcaption>{html.escape(CALIBRATION_CAPTION)}</figcaption></figure>")


def page(artifacts: Path, p) -> tuple[str, int]:
    """The whole HTML page and the number of figures on it."""
    if (artifacts / "train/curve.json").exists():
        training_figure(artifacts)
    prov = provenance(p)
    header = (f"<h1>emergence report</h1><p class='meta'>commit {html.escape(prov['commit'])} &middot; params "
              f"{html.escape(prov['params'])} &middot; data {html.escape(prov['data'])} &middot; model source "
              f"{html.escape(p.model.source)} &middot; seed {p.seed}</p>")
    lines = summary_lines(artifacts)
    summary = ("<ul>" + "".join(f"<li>{html.escape(s)}</li>" for s in lines) + "</ul>" if lines else
               "<p>No metrics files yet: run `dvc repro`.</p>")
    body, count = figures(artifacts, p)
    style = ("<style>body{font-family:sans-serif;margin:2em;max-width:1400px}"
             ".grid{display:flex;flex-wrap:wrap;gap:1em}figure{margin:0;max-width:640px}img{max-width:640px}"
             "figcaption{font-size:12px;color:#444}.missing{border:1px dashed #bbb;padding:1em;color:#666}"
             ".meta{color:#555}.headline{font-size:1.1em}td,th{padding:2px 10px;text-align:left}</style>")
    parts = [header, f"<p class='headline'>{html.escape(headline(artifacts))}</p>", calibration(artifacts),
             "<h2>Summary</h2>" + summary, *body]
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>emergence report</title>{style}</head>"
            f"<body>{''.join(parts)}{CHECK}</body></html>"), count


def main(args) -> None:
    p = load_params(args.params)
    html_page, count = page(Path(args.artifacts), p)
    write_text(Path(args.out) / "index.html", html_page)
    log.info("report with %d figures written to %s", count, Path(args.out) / "index.html")
