"""Stage `susceptibility` (Experiments 3 and 4): chi of every head and MLP to shifts toward
correct, buggy and general code at each checkpoint, from the stored traces, and the
embryology UMAP of the components' per-sequence response profiles across checkpoints.
"""
from __future__ import annotations

import logging
from pathlib import Path

from emergence.analysis import embryology, plots
from emergence.config import load_params
from emergence.estimators import susceptibility as sus
from emergence.io import write_json
from emergence.sampling.trace import TraceError, load_trace
from emergence.stages.influence import trace_files
from emergence.tracking.wandb import init_run, log_matrix

log = logging.getLogger(__name__)
SHIFTS = ["correct", "buggy", "general"]


def first_persistent(steps: list[int], flags: list[bool]) -> int | None:
    """First step from which a flag holds at every later checkpoint."""
    for i in range(len(flags)):
        if all(flags[i:]):
            return steps[i]
    return None


def main(args) -> None:
    import wandb
    p = load_params(args.params)
    out = Path(args.out)
    run = init_run("susceptibility", p)
    steps, rows, profiles, opposite_by_step = [], [], {}, {}
    for step, path in trace_files(Path(args.traces)):
        trace = load_trace(path)
        if "component_obs" not in trace:
            raise TraceError(f"{path} has no component observables: re-sample with `dvc repro sample`")
        comp, obs = trace["component_obs"].values, trace["obs"].values
        labels = trace["label"].values.astype(str)
        names = [str(c) for c in trace["component"].values]
        chi = sus.susceptibility_matrix(comp, obs, labels, SHIFTS)
        lo, hi = sus.bootstrap_interval(comp, obs, labels, SHIFTS, n_boot=p.susceptibility.bootstrap,
                                        blocks=p.susceptibility.blocks, seed=p.seed)
        opposite = sus.opposite_responses(chi, lo, hi, names)
        profiles[step] = sus.sequence_profiles(comp, obs, labels)
        opposite_by_step[step] = {r["component"]: r["significant"] for r in opposite}
        steps.append(step)
        write_json(out / "matrices" / f"step_{step}.json",
                   {"components": names, "shifts": SHIFTS, "chi": chi.tolist(), "lo": lo.tolist(), "hi": hi.tolist(),
                    "opposite": opposite, "svd": sus.principal_directions(chi)})
        for i, n in enumerate(names):
            rows.append({"step": step, "component": n, **{f"chi_{s}": float(chi[i, j]) for j, s in enumerate(SHIFTS)}})
        fig = plots.heatmap(chi, names, SHIFTS, f"susceptibility chi, step {step}", center=True)
        log_matrix(run, f"susceptibility/step_{step}", chi, names, SHIFTS, fig)
        plots.save(fig, out / "heatmaps" / f"step_{step}.png")
        log.info("step %d: opposite correct/buggy responses: %s", step,
                 ", ".join(f"{r['component']}{'*' if r['significant'] else ''}" for r in opposite[:5]) or "none")

    first = {n: first_persistent(steps, [opposite_by_step[s].get(n, False) for s in steps]) for n in names}
    final_opposite = opposite  # of the last checkpoint
    write_json(out / "curve.json", rows)
    write_json(out / "metrics.json", {"final_opposite": [r["component"] for r in final_opposite],
                                      "final_opposite_significant": [r["component"] for r in final_opposite
                                                                     if r["significant"]],
                                      "opposite_from_step": {n: s for n, s in first.items() if s is not None}})

    df = embryology.embed(profiles, names, p.seed, p.susceptibility.umap_neighbors)
    chis = {(r["step"], r["component"]): r for r in rows}
    for key in ("chi_correct", "chi_buggy", "chi_general"):
        df[key] = [chis[(s, c)][key] for s, c in zip(df.step, df.component)]
    write_json(out / "umap.json", df.to_dict(orient="records"))
    grid = embryology.grid_figure(df)
    table = wandb.Table(dataframe=df)
    run.log({"embryology/umap": table, "embryology/grid": wandb.Image(grid),
             "embryology/scatter": wandb.plot.scatter(table, "x", "y", title="components' susceptibility profiles")})
    run.finish()
    plots.save(grid, out / "umap_grid.png")
    embryology.save_animation(df, out / "umap.gif")

