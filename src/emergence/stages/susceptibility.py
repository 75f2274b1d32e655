"""Stage `susceptibility` (Experiments 3 and 4): chi of every head, MLP and top SAE feature to
shifts toward correct, buggy and general code at each checkpoint, from stored traces, and
the embryology UMAP of the heads' and MLPs' per-sequence response profiles across
checkpoints.

* heads and MLPs, ``susceptibility.observable``: ``restricted_loss`` (the paper's phi_V,
  read from the weight-restricted chains of the `rllc` stage, at ``rllc.checkpoints``) or
  ``output_norm`` (recorded in the `sample` traces, at every sampled checkpoint);
* SAE features (the correctness latents the `sae` stage found at that checkpoint): their
  mean activation at the final token of the pair sequences, from the residual reads of
  the `sample` traces, at checkpoints that have an SAE;
* with ``sampler.token_level``: per-token attributions chi_{i,t} for the pair tokens, and
  the tokens that move each opposite responder most.
"""
from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np
import torch

from emergence.analysis import embryology, plots
from emergence.config import load_params
from emergence.device import torch_device
from emergence.data.tokenizer import load_tokenizer
from emergence.estimators import susceptibility as sus
from emergence.io import atomic_path, read_json, write_json
from emergence.models import components
from emergence.sampling.trace import TraceError, load_trace
from emergence.stages.influence import trace_files
from emergence.stages.sample import observable_sets
from emergence.tracking.wandb import init_run, log_matrix, log_series, use_reference

log = logging.getLogger(__name__)
SHIFTS = ["correct", "buggy", "general"]
SAE_UNIT = "sae_activation"


@dataclasses.dataclass
class Rows:
    """Susceptibilities of some components at one checkpoint."""
    names: list[str]
    chi: np.ndarray                   # (m, shifts)
    lo: np.ndarray
    hi: np.ndarray
    profiles: np.ndarray              # (m, non-reference sequences)
    tokens: np.ndarray | None         # (m, scored tokens) per-token attribution
    token_sequence: np.ndarray | None

    @staticmethod
    def join(parts: list["Rows"]) -> "Rows":
        tokens = [r.tokens for r in parts]
        return Rows(sum((r.names for r in parts), []), *(np.concatenate([getattr(r, k) for r in parts])
                                                         for k in ("chi", "lo", "hi", "profiles")),
                    np.concatenate(tokens) if all(t is not None for t in tokens) else None,
                    parts[0].token_sequence)


def rows(phi: np.ndarray, trace, names: list[str], p) -> Rows:
    """chi, its blocked-bootstrap interval, profiles and token attributions of observables phi (C, D, m)."""
    obs, labels = trace["obs"].values, trace["label"].values.astype(str)
    lo, hi = sus.bootstrap_interval(phi, obs, labels, SHIFTS, n_boot=p.susceptibility.bootstrap,
                                    blocks=p.susceptibility.blocks, seed=p.seed)
    token_level = "token_obs" in trace
    return Rows(names, sus.susceptibility_matrix(phi, obs, labels, SHIFTS), lo, hi,
                sus.sequence_profiles(phi, obs, labels),
                sus.token_attribution(phi, trace["token_obs"].values, obs, labels) if token_level else None,
                trace["token_sequence"].values if token_level else None)


def restricted_rows(rllc_traces: Path, step: int, p) -> Rows:
    """phi_V = sampling loss under the posterior restricted to V, for every head and MLP V."""
    files = {f.stem.split("_", 2)[2]: f for f in rllc_traces.glob(f"step_{step}_L*.nc")}
    files = {name: f for name, f in files.items() if components.parse(name).kind in ("head", "mlp")}  # not blocks
    if not files:
        raise TraceError(f"no weight-restricted traces for step {step} in {rllc_traces}: run `dvc repro rllc` "
                         f"(susceptibility.observable = restricted_loss reads them)")
    parts = []
    for name in sorted(files, key=components.order):
        trace = load_trace(files[name])
        if "obs" not in trace:
            raise TraceError(f"{files[name]} has no observables: re-sample with `dvc repro rllc`")
        parts.append(rows(sus.restricted_loss(trace["obs"].values, trace["label"].values.astype(str)),
                          trace, [name], p))
    return Rows.join(parts)


def norm_rows(trace, path: Path, p) -> Rows:
    if "component_obs" not in trace:
        raise TraceError(f"{path} has no component observables: re-sample with `dvc repro sample`")
    return rows(trace["component_obs"].values, trace, [str(c) for c in trace["component"].values], p)


def sae_rows(trace, path: Path, sae_dir: Path, p) -> Rows:
    """phi_k = mean activation of SAE latent k at the final token of the pair sequences, per draw."""
    from sae_lens import SAE
    directions = read_json(sae_dir / "directions.json")
    if "reads" not in trace:
        raise TraceError(f"{path} has no residual reads: re-sample with `dvc repro sample`")
    if directions["hook"] != components.resid_hook(int(trace.attrs["reads_layer"])):
        raise TraceError(f"{path} reads block {trace.attrs['reads_layer']} but the SAE in {sae_dir} was trained "
                         f"on {directions['hook']}: re-run `dvc repro sample`")
    latents = list(dict.fromkeys(directions["top_k_latents"] + [directions["latents"][k]
                                                                  for k in ("t_max", "t_min", "steering")]))
    device = torch_device(p.device)
    sae = SAE.load_from_disk(str(sae_dir / "sae"), device=str(device))
    reads = trace["reads"].values                                        # (C, D, r, d)
    with torch.no_grad():
        feats = sae.encode(torch.from_numpy(reads.reshape(-1, reads.shape[-1])).float().to(device)).cpu().numpy()
    phi = feats[:, latents].reshape(*reads.shape[:3], len(latents)).mean(2)
    return rows(phi, trace, [f"SAE{k}" for k in latents], p)


def top_tokens(r: Rows, component: str, sets, tok, n: int = 12) -> list[dict]:
    """The pair tokens with the largest |chi_{i,t}| for a component, with their context."""
    pairs = sets[0]
    owner = r.token_sequence
    in_pairs = owner < len(pairs)
    positions = np.concatenate([np.nonzero(pairs.mask[i].numpy())[0] for i in range(len(pairs))])
    chi_t = r.tokens[r.names.index(component)][in_pairs]
    best = np.argsort(-np.abs(chi_t))[:n]
    out = []
    for k in best:
        i, j = int(owner[in_pairs][k]), int(positions[k])
        target = pairs.targets[i]
        out.append({"sequence": pairs.names[i], "position": j, "chi": float(chi_t[k]),
                    "token": tok.decode([int(target[j])]),
                    "context": tok.decode(target[max(0, j - 8):j].tolist()) + "[[" +
                    tok.decode([int(target[j])]) + "]]"})
    return out


def unit_tables(parts: dict[str, Rows]) -> dict[str, dict]:
    """Per observable unit (loss under restricted sampling, output norm, SAE activation): its own
    chi matrix with intervals, opposite-response ranking and SVD; rows of different units
    are never ranked or decomposed together (their chi are in different units)."""
    return {u: {"components": r.names, "chi": r.chi.tolist(), "lo": r.lo.tolist(), "hi": r.hi.tolist(),
                "opposite": sus.opposite_responses(r.chi, r.lo, r.hi, r.names),
                "svd": sus.principal_directions(r.chi)} for u, r in parts.items()}


def first_persistent(steps: list[int], flags: list[bool]) -> int | None:
    """First step from which a flag holds at every later checkpoint."""
    for i in range(len(flags)):
        if all(flags[i:]):
            return steps[i]
    return None


def main(args) -> None:
    import wandb
    p = load_params(args.params)
    out, sae_root, corpus = Path(args.out), Path(args.sae), Path(args.corpus)
    sample = dict(trace_files(Path(args.traces)))
    if p.susceptibility.observable == "restricted_loss":
        weight = {s: restricted_rows(Path(args.rllc), s, p) for s in p.rllc.checkpoints}
    else:
        weight = {s: norm_rows(load_trace(path), path, p) for s, path in sample.items()}
    features = {s: sae_rows(load_trace(sample[s]), sample[s], sae_root / f"step_{s}", p)
                for s in sorted(sample) if (sae_root / f"step_{s}" / "sae").exists()}
    sets = observable_sets(p, corpus) if p.sampler.token_level else None
    tok = load_tokenizer(corpus / "tokenizer.json") if p.sampler.token_level else None

    run = init_run("susceptibility", p)
    use_reference(run, "traces", "sgld-trace", args.traces)
    for step in features:
        use_reference(run, f"sae-step{step}", "sae", sae_root / f"step_{step}")
    curve, opposite_by_step, final, sae_opposite = [], {}, None, {}
    unit = p.susceptibility.observable
    for step in sorted(set(weight) | set(features)):
        parts = {u: x[step] for u, x in ((unit, weight), (SAE_UNIT, features)) if step in x}
        tables = unit_tables(parts)
        if step in weight:
            opposite_by_step[step] = {o["component"]: o["significant"] for o in tables[unit]["opposite"]}
            final = (step, tables[unit]["opposite"])
        if step in features:
            sae_opposite[str(step)] = [o["component"] for o in tables[SAE_UNIT]["opposite"] if o["significant"]]
        r = Rows.join(list(parts.values()))
        matrix = {"components": r.names, "shifts": SHIFTS, "by_unit": tables}
        if r.tokens is not None:
            opposite = [o for t in tables.values() for o in t["opposite"][:3]]
            matrix["top_tokens"] = {o["component"]: top_tokens(r, o["component"], sets, tok) for o in opposite}
            with atomic_path(out / "matrices" / f"step_{step}.tokens.npz") as tmp, open(tmp, "wb") as f:
                np.savez_compressed(f, chi=r.tokens, components=np.asarray(r.names), token_sequence=r.token_sequence)
        write_json(out / "matrices" / f"step_{step}.json", matrix)
        for u, part in parts.items():
            curve += [{"step": step, "component": n, "unit": u, "kind": "sae" if u == SAE_UNIT else "weight",
                       **{f"chi_{s}": float(part.chi[i, j]) for j, s in enumerate(SHIFTS)}}
                      for i, n in enumerate(part.names)]
            suffix = "_sae" if u == SAE_UNIT else ""   # own colour scales: different phi units
            title = f"susceptibility chi ({u}){' of SAE features' if suffix else ''}, step {step}"
            fig = plots.heatmap(part.chi, part.names, SHIFTS, title, center=True)
            log_matrix(run, f"susceptibility/step_{step}{suffix}", part.chi, part.names, SHIFTS, fig)
            plots.save(fig, out / "heatmaps" / f"step_{step}{suffix}.png")
            log.info("step %d (%s): opposite correct/buggy responses: %s", step, u,
                     ", ".join(f"{o['component']}{'*' if o['significant'] else ''}"
                               for o in tables[u]["opposite"][:5]) or "none")

    steps = sorted(weight)
    names = weight[steps[-1]].names
    first = {n: first_persistent(steps, [opposite_by_step[s].get(n, False) for s in steps]) for n in names}
    write_json(out / "curve.json", curve)
    log_series(run, "susceptibility", steps, {
        "opposite_significant": [sum(opposite_by_step[s].values()) for s in steps],
        **{f"mean_abs_{s}": [float(np.mean([abs(c[s]) for c in curve if c["step"] == t and c["unit"] == unit]))
                             for t in steps] for s in ("chi_correct", "chi_buggy", "chi_general")}})
    write_json(out / "metrics.json", {"observable": unit, "final_step": final[0],
                                      "final_opposite": [o["component"] for o in final[1]],
                                      "final_opposite_significant": [o["component"] for o in final[1]
                                                                     if o["significant"]],
                                      "opposite_from_step": {n: s for n, s in first.items() if s is not None},
                                      "sae_opposite_significant": sae_opposite})

    df = embryology.embed({s: weight[s].profiles for s in steps}, names, p.seed, p.susceptibility.umap_neighbors)
    chis = {(c["step"], c["component"]): c for c in curve}
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
