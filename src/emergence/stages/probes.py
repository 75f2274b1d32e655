"""Stage `probes`: activation patching, logit lens, head taxonomy and the function-space
trajectory at every checkpoint (no sampler).

Patching and the logit lens use held-out problems (the same problem split as the
correctness directions). The taxonomy reuses the monitors stage's prefix-matching and
previous-token scores and adds attention to the first token.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import torch

from emergence.analysis import patching, plots, trajectory
from emergence.analysis.heads import first_token_read, head_means
from emergence.config import load_params
from emergence.device import inference, torch_device
from emergence.io import read_json, write_json
from emergence.models import components
from emergence.models.checkpoints import open_series
from emergence.data.windows import fixed_windows
from emergence.models.scoring import build_sequences, load_pair_sequences, token_loss_matrix
from emergence.progress import track
from emergence.sae.directions import problem_splits
from emergence.tracking.wandb import init_run, log_curves, log_matrix, use_reference

log = logging.getLogger(__name__)
CLASSES = ("induction", "previous_token", "first_token", "other")


def classify_heads(prefix: np.ndarray, previous: np.ndarray, first: np.ndarray, threshold: float) -> list[str]:
    """Induction, then previous-token, then first-token (positional) head if the score passes."""
    out = []
    for a, b, c in zip(prefix, previous, first):
        out.append("induction" if a >= threshold else "previous_token" if b >= threshold
                   else "first_token" if c >= threshold else "other")
    return out


def bootstrap_mean(x: np.ndarray, n_boot: int, seed: int) -> tuple[float, float, float]:
    """Mean of the finite values of x and a 90% bootstrap interval (the caller counts the others)."""
    x = x[np.isfinite(x)]
    if len(x) == 0:
        return float("nan"), float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = [x[rng.integers(0, len(x), len(x))].mean() for _ in range(n_boot)]
    return float(x.mean()), float(np.quantile(means, 0.05)), float(np.quantile(means, 0.95))


def main(args) -> None:
    p = load_params(args.params)
    corpus, out = Path(args.corpus), Path(args.out)
    series = open_series(p.model, args.checkpoints, torch_device(p.device))
    rows = [json.loads(line) for line in (corpus / "pairs_tokens.jsonl").read_text().splitlines()]
    held = problem_splits(np.array([r["task_id"] for r in rows]), p.seed).held_out
    pairs = patching.patchable_pairs([rows[i] for i in held], p.model.n_ctx)[: p.probes.max_pairs]
    seqs = load_pair_sequences(corpus / "pairs_tokens.jsonl", p.model.n_ctx, p.sampler.n_pairs, p.seed)
    half = len(seqs) // 2
    vx, vy = fixed_windows(corpus / "val.bin", p.model.n_ctx, p.probes.windows).tensors
    probe = [seqs, build_sequences(torch.cat([vx, vy[:, -1:]], 1).tolist(), [1] * len(vx), p.model.n_ctx,
                                   [f"general/{i}" for i in range(len(vx))], ["general"] * len(vx),
                                   ["general"] * len(vx))]
    monitors = read_json(args.monitors)
    run = init_run("probes", p)
    use_reference(run, "checkpoints", "model", args.checkpoints)
    steps, totals, lens_pref, classes, losses_by_step, skipped, empty = [], [], [], [], [], [], []
    for ckpt in track(series, "probes", len(series.steps)):
        hooked = ckpt.hooked()
        n_layers, n_heads = hooked.cfg.n_layers, hooked.cfg.n_heads
        comps = components.hooks(n_layers, n_heads, mlp=not hooked.cfg.attn_only)
        names = list(comps)
        with torch.inference_mode():  # loss differences in float32, whatever device.precision says
            effects = patching.patch_effects(hooked, pairs, comps, min_gap=p.probes.min_gap)  # (pairs, comps, positions)
        used = ~patching.skipped_pairs(effects)
        skipped.append(int((~used).sum()))
        empty.append(int(np.isnan(effects[used, 0]).sum()))   # (pair, position group) with no positions
        mean_effects = (np.nanmean(effects[used], axis=0) if used.any()
                        else np.full((len(names), len(patching.POSITIONS)), np.nan))
        total = [bootstrap_mean(t, 300, p.seed) for t in patching.total_effect(effects).T]
        totals.append(total)
        fig = plots.heatmap(mean_effects, names, patching.POSITIONS,
                            f"patching effect, step {ckpt.step}\n({int(used.sum())} of {len(pairs)} pairs; "
                            f"{skipped[-1]} skipped: gap < {p.probes.min_gap} nats)", center=True)
        log_matrix(run, f"probes/patching_step_{ckpt.step}", mean_effects, names, patching.POSITIONS, fig)
        plots.save(fig, out / "patching" / f"step_{ckpt.step}.png")

        with torch.inference_mode():
            lens = patching.logit_lens(hooked, seqs.ids, seqs.targets, seqs.mask, p.device.memory_mb)  # (layers, 2 * pairs)
            losses_by_step.append(torch.cat([token_loss_matrix(ckpt.model, s, p.device.memory_mb).cpu()
                                             [s.mask.bool()] for s in probe]).numpy())
        with inference(p.device):  # attention statistics: bf16 where device.precision asks for it
            first = head_means(hooked, vx, {"first": first_token_read}, p.device.memory_mb)["first"].ravel()
        lens_pref.append((lens[:, :half] < lens[:, half:]).mean(1))
        k = list(monitors["steps"]).index(ckpt.step)
        classes.append(classify_heads(np.array(monitors["prefix_matching"])[:, k],
                                      np.array(monitors["previous_token"])[:, k], first, p.probes.head_threshold))
        steps.append(ckpt.step)
        ranking = sorted((i for i, n in enumerate(names) if not n.endswith(".resid")),
                         key=lambda i: -np.nan_to_num(total[i][0]))
        log.info("step %d: top patching components %s", ckpt.step,
                 ", ".join(f"{names[i]} {total[i][0]:+.2f}" for i in ranking[:3]))

    effect = np.array([[t[0] for t in tot] for tot in totals])          # (steps, components)
    lo = np.array([[t[1] for t in tot] for tot in totals])
    parts = [i for i, n in enumerate(names) if not n.endswith(".resid")]  # a residual stream carries everything
    top = [names[i] for i in sorted(parts, key=lambda i: -np.nan_to_num(effect[-1, i]))[:5]]
    significant = [s for s, row in zip(steps, lo[:, parts]) if np.nanmax(row) > p.probes.share]
    head_names = [n for n in names if "H" in n]
    write_json(out / "patching.json", {"steps": steps, "components": names, "positions": list(patching.POSITIONS),
                                       "pairs": len(pairs), "pairs_skipped_small_gap": skipped,
                                       "empty_position_groups": empty, "min_gap": p.probes.min_gap,
                                       "total_effect": effect.tolist(), "total_lo": lo.tolist(),
                                       "top_components": top})
    write_json(out / "curve.json", [{"step": s, "component": n, "effect": float(effect[i, names.index(n)]),
                                     "lower": float(lo[i, names.index(n)])} for i, s in enumerate(steps) for n in top])
    write_json(out / "logit_lens.json", {"steps": steps, "correct_preferred": np.array(lens_pref).tolist()})
    write_json(out / "taxonomy.json", {"steps": steps, "heads": head_names, "classes": classes})

    losses = np.array(losses_by_step)
    proj, _, ratio = trajectory.pca(losses, 4)
    turns = [steps[i] for i in trajectory.turning_points(proj[:, :2], p.probes.turn_degrees)]
    n_pair_tokens = int(seqs.mask.sum())
    correct_tokens = int(seqs.mask[:half].sum())
    sides = {"correct": losses[:, :correct_tokens], "buggy": losses[:, correct_tokens:n_pair_tokens]}
    side_pc1 = {k: trajectory.pca(v, 1)[0][:, 0].tolist() for k, v in sides.items()}
    llc_peaks = read_json(args.influence)["peaks"]["llc"] if Path(args.influence).exists() else None
    write_json(out / "trajectory.json", {"steps": steps, "pcs": proj.tolist(), "explained": ratio.tolist(),
                                         "turning_points": turns, "pc1_correct": side_pc1["correct"],
                                         "pc1_buggy": side_pc1["buggy"], "llc_peaks": llc_peaks})
    write_json(out / "metrics.json", {"patching_top": top, "first_significant_step": significant[0] if significant else None,
                                      "patching_pairs": len(pairs), "min_gap": p.probes.min_gap,
                                      "pairs_skipped_small_gap": dict(zip(map(str, steps), skipped)),
                                      "turning_points": turns, "llc_peaks": llc_peaks,
                                      "final_head_classes": dict(zip(head_names, classes[-1]))})
    figs = {
        "patching_over_training": plots.curves(steps, {n: effect[:, names.index(n)].tolist() for n in top},
                                               f"patching effect of the top components\n(pairs skipped, gap < "
                                               f"{p.probes.min_gap} nats: {min(skipped)}-{max(skipped)} of "
                                               f"{len(pairs)})", "normalised effect",
                                               {"first significant": significant[:1]}),
        "logit_lens": plots.heatmap(np.array(lens_pref).T, [f"L{i}" for i in range(n_layers)], steps,
                                    "logit lens: share of pairs preferring the correct version"),
        "taxonomy": _taxonomy_figure(classes, head_names, steps),
        "trajectory": _trajectory_figure(proj, steps, turns),
    }
    log_curves(run, "probes/patching", steps, {n: effect[:, names.index(n)].tolist() for n in top},
               figs["patching_over_training"])
    log_matrix(run, "probes/logit_lens", np.array(lens_pref).T, [f"L{i}" for i in range(n_layers)], steps,
               figs["logit_lens"])
    log_matrix(run, "probes/taxonomy", np.array([[CLASSES.index(c) for c in row] for row in classes]).T,
               head_names, steps, figs["taxonomy"])
    log_curves(run, "probes/trajectory", steps, {"pc1": proj[:, 0].tolist(), "pc2": proj[:, 1].tolist()},
               figs["trajectory"])
    run.finish()
    for name, fig in figs.items():
        plots.save(fig, out / f"{name}.png")
    log.info("patching: first step with a significant share %s; trajectory turns at %s (LLC peaks %s)",
             significant[:1], turns, llc_peaks)


def _taxonomy_figure(classes: list[list[str]], heads: list[str], steps: list[int]):
    """Each head's class per checkpoint in one categorical colour per class, with a legend."""
    import matplotlib.pyplot as plt
    from matplotlib.colors import BoundaryNorm, ListedColormap
    from matplotlib.patches import Patch
    colours = plt.get_cmap("tab10").colors[:len(CLASSES)]
    fig, ax = plt.subplots(figsize=(max(4, 0.45 * len(steps) + 3), max(3, 0.3 * len(heads) + 1.5)))
    ax.imshow(np.array([[CLASSES.index(c) for c in row] for row in classes]).T, aspect="auto",
              cmap=ListedColormap(colours), norm=BoundaryNorm(np.arange(len(CLASSES) + 1) - 0.5, len(CLASSES)))
    ax.set_xticks(range(len(steps)), [str(s) for s in steps], rotation=90, fontsize=7)
    ax.set_yticks(range(len(heads)), heads, fontsize=7)
    ax.set_xlabel("checkpoint step")
    ax.set_title("attention-head classes over training")
    ax.legend(handles=[Patch(color=c, label=n.replace("_", " ")) for c, n in zip(colours, CLASSES)],
              loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=7)
    fig.tight_layout()
    return fig


def _trajectory_figure(proj: np.ndarray, steps: list[int], turns: list[int]):
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(5, 4))
    ax.plot(proj[:, 0], proj[:, 1], "-o", ms=3)
    for (x, y), s in zip(proj[:, :2], steps):
        ax.annotate(str(s), (x, y), fontsize=6, color="red" if s in turns else "black")
    ax.set_xlabel("PC1")
    ax.set_ylabel("PC2")
    ax.set_title("function-space trajectory (turning points in red)")
    fig.tight_layout()
    return fig
