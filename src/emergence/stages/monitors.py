"""Stage `monitors`: induction (prefix-matching), previous-token and ICL scores at every checkpoint."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from emergence.analysis import heads, plots
from emergence.config import load_params
from emergence.device import inference, torch_device
from emergence.io import write_json
from emergence.models import components
from emergence.models.checkpoints import open_series
from emergence.data.windows import fixed_windows
from emergence.progress import track
from emergence.tracking.wandb import init_run, log_curves, log_matrix

log = logging.getLogger(__name__)


def main(args) -> None:
    p = load_params(args.params)
    series = open_series(p.model, args.checkpoints, torch_device(p.device))
    val = fixed_windows(Path(args.corpus) / "val.bin", p.model.n_ctx, p.monitors.icl_windows)
    x, y = val.tensors
    steps, prefix, prev, icl = [], [], [], []
    for ckpt in track(series, "monitors", len(series.steps)):
        hooked = ckpt.hooked()
        with inference(p.device):
            scores = heads.head_monitors(hooked, hooked.cfg.d_vocab, p.monitors.repeat_length,
                                         p.monitors.batch, p.seed, p.device.memory_mb)
            icl.append(heads.icl_score(ckpt.model, x, y, p.monitors.icl_early, p.model.n_ctx - 1, p.device.memory_mb))
        steps.append(ckpt.step)
        prefix.append(scores["prefix_matching"].ravel())
        prev.append(scores["previous_token"].ravel())
        log.info("step %d: max prefix-matching %.3f, max previous-token %.3f, ICL %.3f",
                 ckpt.step, prefix[-1].max(), prev[-1].max(), icl[-1])
    names = components.head_names(hooked.cfg.n_layers, hooked.cfg.n_heads)
    prefix, prev = np.array(prefix).T, np.array(prev).T  # (heads, steps)
    out = Path(args.out)
    write_json(out / "monitors.json", {"steps": steps, "heads": names, "prefix_matching": prefix.tolist(),
                                       "previous_token": prev.tolist(), "icl": icl})
    write_json(out / "curve.json", [{"step": s, "icl": i, "max_prefix_matching": float(prefix[:, k].max()),
                                     "max_previous_token": float(prev[:, k].max())}
                                    for k, (s, i) in enumerate(zip(steps, icl))])
    k_ind = int(prefix[:, -1].argmax())
    write_json(out / "metrics.json", {"final_max_prefix_matching": float(prefix[:, -1].max()),
                                      "final_max_previous_token": float(prev[:, -1].max()),
                                      "final_icl": icl[-1], "top_induction_head": names[k_ind]})
    figs = {"prefix_matching": plots.heatmap(prefix, names, steps, "prefix-matching score (head x step)"),
            "previous_token": plots.heatmap(prev, names, steps, "previous-token score (head x step)"),
            "icl": plots.curves(steps, {"ICL score": icl}, "in-context learning score", "loss late - early")}
    run = init_run("monitors", p)
    for name in ("prefix_matching", "previous_token"):
        matrix = prefix if name == "prefix_matching" else prev
        log_matrix(run, f"monitors/{name}", matrix, names, steps, figs[name])
        log_curves(run, f"monitors/{name}_curves", steps, {n: list(matrix[i]) for i, n in enumerate(names)})
    log_curves(run, "monitors/icl", steps, {"icl": icl}, figs["icl"])
    run.finish()
    for name, fig in figs.items():
        plots.save(fig, out / f"{name}.png")
