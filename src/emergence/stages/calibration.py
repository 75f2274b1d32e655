"""Stages `calib_*`: the pipeline's instruments on a series with a known transition.

In-context Markov chains (Edelman et al. 2024, arXiv 2402.11004) train a small attention-only
GPT through uniform -> in-context unigram -> in-context bigram; the step t* at which its
statistical induction head forms (the monitors, on the data itself) is the ground truth each
instrument's change point is judged against.

* `calib_data`: train.bin / val.bin (one sequence per n_ctx + 1 window) and the reference losses;
* `calib_train`: the checkpoint series (the LM training of `train_lm`, aligned windows);
* `calib_monitors`: induction (on the data), previous-token, prefix-matching and ICL scores, t*, and
  the function-space trajectory (PCA of per-token losses, its turning points);
* `calib_sample`: one SGLD trace per sampled checkpoint, observing validation chains ("markov") and
  the same tokens shuffled within each sequence ("shuffled": unigram counts kept, bigram statistics
  gone); from it, with intervals: the LLC, the BIF blocks markov->markov, markov->shuffled,
  shuffled->shuffled, and each head's susceptibility chi = -Cov(phi_head, L_markov - L_shuffled)
  to the shift toward bigram-dependent data (phi = the head's output norm); and each head's
  weight-refined LLC (SGLD restricted to the head's weights, Wang et al. 2025); and a UMAP of the
  heads' response profiles (chi to each Markov sequence) over checkpoints, as in the embryology view;
* `calib_verdicts`: each instrument's change point (analysis/boundaries) against t*; the
  susceptibility and rLLC read are those of the top induction head named by the monitors.

Lightning and the sampler are imported by the two stages that run them (calib_train, calib_sample):
the other three start in about 3 s rather than 8.
"""
from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path

import numpy as np
import torch

from emergence.analysis import embryology, heads, trajectory
from emergence.analysis.boundaries import MIN_CHECKPOINTS, change_point
from emergence.analysis.induction import induction_chance, induction_read, transition_step
from emergence.config import load_params, params_hash
from emergence.data.markov import read_sequences, reference_losses, sample_chains, write_sequences
from emergence.device import inference, torch_device
from emergence.estimators.bif import bif_matrix, block_aggregates, draw_resampler
from emergence.estimators.llc import llc
from emergence.estimators.susceptibility import bootstrap_interval, sequence_profiles, susceptibility_matrix
from emergence.interrupt import fit
from emergence.io import read_json, seed_for, sha256_file, write_json
from emergence.models import components
from emergence.models.checkpoints import OwnSeries
from emergence.models.gpt import token_losses
from emergence.models.scoring import SequenceSet, build_sequences
from emergence.progress import track
from emergence.sampling.observables import sequence_observables
from emergence.sampling.trace import cache_key, save_trace
from emergence.tracking.wandb import init_run, log_curves

log = logging.getLogger(__name__)
SHIFT, REFERENCE = "markov", "shuffled"   # the data shift the instruments read: toward bigram-dependent data
BLOCKS = (f"{SHIFT}->{SHIFT}", f"{SHIFT}->{REFERENCE}", f"{REFERENCE}->{REFERENCE}")


def data(args) -> None:
    p = load_params(args.params)
    c, seed = p.calibration, p.seed
    out = Path(args.out)
    for i, (split, n) in enumerate((("train", c.train_sequences), ("val", c.val_sequences))):
        seqs, _ = sample_chains(n, c.n_ctx + 1, c.k, c.alpha, np.random.default_rng([seed, i]))
        write_sequences(out / f"{split}.bin", seqs)
    refs = reference_losses(read_sequences(out / "val.bin", c.n_ctx + 1), c.k, c.alpha)
    write_json(out / "references.json", {"mean": {k: float(v.mean()) for k, v in refs.items()},
                                         "per_position": {k: v.tolist() for k, v in refs.items()}})
    log.info("calibration data: k=%d; reference losses %s", c.k,
             ", ".join(f"{k} {v.mean():.4f}" for k, v in refs.items()))


def _calibration_params(p):
    """`p` with the train section replaced by the calibration's schedule."""
    c = p.calibration
    return dataclasses.replace(p, train=dataclasses.replace(
        p.train, max_steps=c.max_steps, batch_size=c.batch_size, lr=c.lr, min_lr=c.min_lr,
        warmup_steps=c.warmup_steps, weight_decay=c.weight_decay, val_windows=c.val_windows))


def train(args) -> None:
    import pytorch_lightning as pl
    from emergence.models.lm_module import CheckpointSeriesWriter, LMModule, TokenDataModule
    from emergence.stages.train_lm import build_trainer, resume_or_clear
    p = load_params(args.params)
    c, pt = p.calibration, _calibration_params(p)
    data_dir, out = Path(args.data), Path(args.out)
    model_cfg = dict(vocab_size=c.k, n_ctx=c.n_ctx, n_layer=c.n_layer, n_head=c.n_head, d_model=c.d_model,
                     d_mlp=c.d_mlp, attn_only=c.attn_only)
    meta = {"data_sha256": sha256_file(data_dir / "train.bin"), "params_hash": params_hash((p.seed, c, pt.train, p.device.precision)),
            "model_source": "own"}
    writer = CheckpointSeriesWriter(out, c.checkpoint_steps, meta, None, p.device.memory_mb)
    resume = resume_or_clear(writer, out, meta)
    t0 = time.perf_counter()
    pl.seed_everything(p.seed, workers=True, verbose=False)
    dm = TokenDataModule(str(data_dir / "train.bin"), str(data_dir / "val.bin"), c.n_ctx, c.batch_size, p.seed,
                         c.val_windows, aligned=True)
    module = LMModule(model_cfg, c.lr, c.min_lr, c.warmup_steps, c.max_steps, c.weight_decay)
    fit(build_trainer(pt, [writer], None, "calib_train"), module, datamodule=dm, ckpt_path=resume)
    writer.mark_complete()
    seconds = time.perf_counter() - t0
    index = read_json(out / "index.json")["checkpoints"]
    refs = read_json(data_dir / "references.json")["mean"]
    report = Path(args.report)
    write_json(report / "curve.json", [{"step": e["step"], "val_loss": e["val/loss"]} for e in index])
    write_json(report / "metrics.json", {"final_step": index[-1]["step"], "val_loss": index[-1]["val/loss"],
                                         **{f"{k}_reference": v for k, v in refs.items()}})
    log.info("calibration series: %d steps in %.0f s (%.0f tokens/s); val loss %.4f (unigram %.4f, bigram %.4f)",
             c.max_steps, seconds, c.max_steps * c.batch_size * c.n_ctx / seconds, index[-1]["val/loss"],
             refs["unigram"], refs["bigram"])


def monitors(args) -> None:
    p = load_params(args.params)
    c = p.calibration
    seqs = torch.from_numpy(read_sequences(Path(args.data) / "val.bin", c.n_ctx + 1)[:c.monitor_sequences])
    x, y = seqs[:, :-1], seqs[:, 1:]
    chance = induction_chance(x)
    device = torch_device(p.device)
    series = OwnSeries(args.checkpoints, device)
    losses = {e["step"]: e["val/loss"] for e in series.index["checkpoints"]}
    rows, induction, previous, prefix, per_token = [], [], [], [], []
    for ckpt in track(series, "calib_monitors", len(series.steps)):
        with inference(p.device):  # one forward pass: the trajectory's point and the ICL score
            loss_by_token = token_losses(ckpt.model(x.to(device)), y.to(device)).float().cpu()
        per_token.append(loss_by_token.flatten().numpy())
        hooked = ckpt.hooked()
        reads = heads.head_means(hooked, x, {"induction": induction_read, "previous": heads.previous_token_read},
                                 p.device.memory_mb)
        induction.append(reads["induction"].ravel())
        previous.append(reads["previous"].ravel())
        prefix.append(heads.head_monitors(hooked, c.k, p.monitors.repeat_length, p.monitors.batch,
                                          p.seed, p.device.memory_mb)["prefix_matching"].ravel())
        rows.append({"step": ckpt.step, "val_loss": losses[ckpt.step], "max_induction": float(induction[-1].max()),
                     "max_previous_token": float(previous[-1].max()), "max_prefix_matching": float(prefix[-1].max()),
                     "icl": heads.icl_from_losses(loss_by_token, p.monitors.icl_early, c.n_ctx - 1)})
        log.info("step %d: loss %.4f, max induction %.3f (chance %.3f), max previous-token %.3f",
                 ckpt.step, rows[-1]["val_loss"], rows[-1]["max_induction"], chance, rows[-1]["max_previous_token"])
    steps = [r["step"] for r in rows]
    pcs, _, explained = trajectory.pca(np.array(per_token), 2)  # the function-space trajectory
    angles = trajectory.turn_angles(pcs)
    turns = [steps[i] for i in trajectory.turning_points(pcs, p.probes.turn_degrees)]
    for row, pc, angle in zip(rows, pcs, angles):
        row.update({"trajectory_pc1": float(pc[0]), "trajectory_pc2": float(pc[1]),
                    "trajectory_turn_degrees": None if np.isnan(angle) else float(angle)})
    names = components.head_names(hooked.cfg.n_layers, hooked.cfg.n_heads)
    t_star = transition_step(steps, [r["max_induction"] for r in rows], chance, c.min_rise)
    out = Path(args.out)
    write_json(out / "curve.json", rows)
    write_json(out / "monitors.json", {"steps": steps, "heads": names, "induction": np.array(induction).T.tolist(),
                                       "previous_token": np.array(previous).T.tolist(),
                                       "prefix_matching": np.array(prefix).T.tolist()})
    write_json(out / "metrics.json", {"t_star": t_star, "induction_chance": chance,
                                      "final_max_induction": rows[-1]["max_induction"],
                                      "top_induction_head": names[int(induction[-1].argmax())],
                                      "top_previous_token_head": names[int(previous[-1].argmax())],
                                      "trajectory_explained": explained.tolist(), "trajectory_turns": turns})
    log.info("t* = %s (max induction from chance %.3f to %.3f)", t_star, chance, rows[-1]["max_induction"])


def observable_sets(val_bin: Path, c, seed: int) -> list[SequenceSet]:
    """The first `c.observable_sequences` validation chains ("markov") and the same tokens shuffled
    within each sequence ("shuffled"); sequence i and its shuffle share group i, every target scored."""
    seqs = read_sequences(val_bin, c.n_ctx + 1)[:c.observable_sequences]
    rng = np.random.default_rng(seed_for(seed, "calibration-shuffle"))
    shuffled = np.stack([rng.permutation(x) for x in seqs])
    n = len(seqs)
    return [build_sequences(x.tolist(), [1] * n, c.n_ctx, [f"{label}{i}" for i in range(n)], [label] * n,
                            [str(i) for i in range(n)]) for x, label in ((seqs, SHIFT), (shuffled, REFERENCE))]


def instruments(trace, p) -> tuple[dict, list[dict], np.ndarray]:
    """The row of one checkpoint (LLC, the three BIF blocks, each with its interval), one row per
    head (chi to the shift toward the Markov data, with its blocked-bootstrap interval) and the
    heads' response profiles (heads, Markov sequences) for the embryology map."""
    level, boot = p.influence.level, p.calibration.bootstrap
    est = llc(trace, level)
    row = {"llc": est["llc"], "llc_lo": est["llc_lo"], "llc_hi": est["llc_hi"], "rhat": est["rhat"]}
    obs = trace["obs"].values
    labels, groups = trace["label"].values.astype(str), trace["group"].values.astype(str)
    form = lambda draws: bif_matrix(draws, pearson=p.influence.pearson)  # noqa: E731
    blocks = block_aggregates(form(obs), labels, groups, n_boot=boot, seed=p.seed, level=level,
                              resample=draw_resampler(obs, form), classes=(SHIFT, REFERENCE))
    for name in BLOCKS:
        key = "bif_" + name.replace("->", "_to_")
        row.update({key: blocks[name]["mean"], f"{key}_lo": blocks[name]["lo"], f"{key}_hi": blocks[name]["hi"]})
    phi = trace["component_obs"].values
    chi = susceptibility_matrix(phi, obs, labels, [SHIFT], REFERENCE)[:, 0]
    lo, hi = bootstrap_interval(phi, obs, labels, [SHIFT], REFERENCE, n_boot=boot, seed=p.seed, level=level)
    heads = [{"component": str(h), "chi": float(chi[i]), "chi_lo": float(lo[i, 0]), "chi_hi": float(hi[i, 0])}
             for i, h in enumerate(trace["component"].values)]
    return row, heads, sequence_profiles(phi, obs, labels, REFERENCE)


def sample(args) -> None:
    from emergence.sampling.sampler_module import sample_lm
    from emergence.stages.sample import NOT_IN_KEY, existing, observables_digest, selected_steps, weights_digest
    p = load_params(args.params)
    c, cfg = p.calibration, p.calibration.sampler
    series, out, data_dir = OwnSeries(args.checkpoints, torch_device(p.device)), Path(args.out), Path(args.data)
    train_bin = str(data_dir / "train.bin")
    sets = observable_sets(data_dir / "val.bin", c, p.seed)
    rows, head_rows, profiles = [], [], {}
    settings = {**{k: v for k, v in dataclasses.asdict(cfg).items() if k not in NOT_IN_KEY}, "seed": p.seed,
                "n_ctx": c.n_ctx, "aligned": True}
    steps = selected_steps(cfg.checkpoints, series.steps)
    for k, step in enumerate(steps, 1):
        ckpt = series.load(step)
        digest = weights_digest(ckpt.model)
        observables = sequence_observables(sets, p.device.memory_mb, component_probe=0, model=ckpt.model)

        def traced(path: Path, key: str, **kwargs):
            """The trace at `path` if its key matches, else sampled now and saved."""
            trace = existing(path, key)
            if trace is None:
                trace = sample_lm(ckpt.model, cfg, p.seed, train_bin, c.n_ctx, attrs={
                    "checkpoint": ckpt.source, "step": step, "cache_key": key}, aligned=True,
                    label=f"calib_sample step {step} ({k}/{len(steps)}) {path.stem.split('_', 2)[-1]}",
                    device=p.device, **kwargs)
                save_trace(trace, path)
            return trace

        trace = traced(out / f"step_{step}.nc", cache_key(digest, observables_digest(data_dir, sets, observables),
                                                           settings), observables=observables)
        row, heads, profiles[step] = instruments(trace, p)
        for h in heads:  # the weight-refined LLC of each head: SGLD restricted to its weights
            name = h["component"]
            est = llc(traced(out / f"step_{step}_{name}.nc", cache_key(digest, name, settings), components=[name]),
                      p.influence.level)
            h.update({"rllc": est["llc"], "rllc_lo": est["llc_lo"], "rllc_hi": est["llc_hi"]})
        rows.append({"step": step, **row})
        head_rows += [{"step": step, **h} for h in heads]
        log.info("step %d: LLC %.2f [%.2f, %.2f]; BIF %s %.3f, %s %.3f; max |chi| %.3g", step, row["llc"],
                 row["llc_lo"], row["llc_hi"], BLOCKS[0], row["bif_markov_to_markov"], BLOCKS[1],
                 row["bif_markov_to_shuffled"], max(abs(h["chi"]) for h in heads))
    report = Path(args.report)
    write_json(report / "curve.json", rows)
    write_json(report / "heads.json", head_rows)
    umap = embryology.embed(profiles, [h["component"] for h in heads], p.seed, p.susceptibility.umap_neighbors)
    write_json(report / "umap.json", umap.to_dict(orient="records"))


def _verdict(steps_all: list[int], t_star: int | None, found: dict, tolerance: int) -> str:
    if found["step"] is None:
        return "no change"
    if t_star is None:
        return "miss (no transition)"
    off = abs(steps_all.index(found["step"]) - steps_all.index(t_star))
    return "hit" if off <= tolerance else "miss"


def verdicts(args) -> None:
    p = load_params(args.params)
    c = p.calibration
    monitors_dir, sampled = Path(args.monitors), Path(args.instruments)
    truth = read_json(monitors_dir / "metrics.json")
    rows = read_json(monitors_dir / "curve.json")
    steps = [r["step"] for r in rows]
    curves = {name: (steps, [r[name] for r in rows], None, None)
              for name in ("val_loss", "max_induction", "max_previous_token", "max_prefix_matching", "icl")}
    if (sampled / "curve.json").exists():
        sampled_rows = read_json(sampled / "curve.json")
        for name in ["llc"] + ["bif_" + b.replace("->", "_to_") for b in BLOCKS]:
            curves[name] = tuple([r[k] for r in sampled_rows] for k in ("step", name, f"{name}_lo", f"{name}_hi"))
        head = truth["top_induction_head"]
        per_head = [r for r in read_json(sampled / "heads.json") if r["component"] == head]
        for name in ("chi", "rllc"):
            curves[f"{name}_{head}"] = tuple([r[k] for r in per_head] for k in ("step", name, f"{name}_lo", f"{name}_hi"))
    instruments = {}
    for name, (s, v, lo, hi) in curves.items():
        if len(s) < MIN_CHECKPOINTS:
            instruments[name] = {"step": None, "verdict": f"too few checkpoints ({len(s)} < {MIN_CHECKPOINTS})"}
            continue
        found = change_point(s, v, lo, hi, level=c.boundary_level, interval_level=p.influence.level)
        if found["step"] is not None and found["step"] not in steps:
            raise ValueError(f"{name}: change at step {found['step']}, which is not a checkpoint of the series")
        instruments[name] = {**found, "verdict": _verdict(steps, truth["t_star"], found, c.tolerance_checkpoints)}
        log.info("%s: %s at %s (t* = %s)", name, instruments[name]["verdict"], found["step"], truth["t_star"])
    turns = [(r["trajectory_turn_degrees"], r["step"]) for r in rows
             if (r.get("trajectory_turn_degrees") or 0) > p.probes.turn_degrees]
    turn = max(turns)[1] if turns else None  # the sharpest bend of the function-space trajectory
    instruments["trajectory_turn"] = {"step": turn, "kind": "sharpest turn (PC1, PC2 of per-token losses)",
                                      "verdict": _verdict(steps, truth["t_star"], {"step": turn}, c.tolerance_checkpoints)}
    write_json(Path(args.out) / "metrics.json", {"t_star": truth["t_star"], "induction_chance": truth["induction_chance"],
                                                 "tolerance_checkpoints": c.tolerance_checkpoints,
                                                 "instruments": instruments})
    run = init_run("calibration", p)
    for name, (s, v, lo, hi) in curves.items():
        log_curves(run, f"calibration/{name}", s, {name: v}, intervals=None if lo is None else {name: (lo, hi)})
    run.summary.update({"calibration/t_star": truth["t_star"],
                        **{f"calibration/verdict/{name}": v["verdict"] for name, v in instruments.items()}})
    run.finish()
