"""Stage `corpus`: decontaminated stdlib corpus, tokenizer (our BPE, or the HF model's own when
``model.source`` is hf), token files, tokenised pairs."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from emergence.config import load_params
from emergence.data import corpus, tokenizer
from emergence.data.pairs import read_pairs
from emergence.io import atomic_path, write_json, write_jsonl
from emergence.models.checkpoints import hf_tokenizer

log = logging.getLogger(__name__)


def tokenise_pairs(tok, rows: list[dict]) -> list[dict]:
    """Token ids of each pair's two versions, with prompt length and bug span in tokens."""
    out = []
    for r in rows:
        enc_c, enc_b = tok.encode(r["correct_code"]), tok.encode(r["buggy_code"])
        item = {"pair_id": r["pair_id"], "task_id": r["task_id"], "mutation": r["mutation"],
                "correct_ids": enc_c.ids, "buggy_ids": enc_b.ids,
                "correct_len": len(enc_c.ids), "buggy_len": len(enc_b.ids),
                "prompt_tokens": min(tokenizer.prefix_tokens(enc_c.offsets, len(r["prompt"])),
                                     tokenizer.prefix_tokens(enc_b.offsets, len(r["prompt"])))}
        if "span" in r:
            item["buggy_span"] = list(tokenizer.token_span(enc_b.offsets, *r["span"]))
        if "correct_span" in r:
            item["correct_span"] = list(tokenizer.token_span(enc_c.offsets, *r["correct_span"]))
        out.append(item)
    return out


def main(args) -> None:
    p = load_params(args.params)
    rows, _ = read_pairs(args.pairs)
    texts = [r[k] for r in rows for k in ("correct_code", "buggy_code")]
    c = corpus.build_corpus(args.stdlib, texts, p.seed, p.corpus.val_percent,
                            p.corpus.decontam_ngram, p.corpus.max_file_bytes)
    log.info("corpus: %d train / %d val files; dropped %d duplicates, %d contaminated, %d too large",
             len(c.train), len(c.val), len(c.duplicates), len(c.contaminated), len(c.too_large))
    if p.model.source == "hf":  # the model's own tokenizer: corpus and pairs as it reads them
        tok, eot = hf_tokenizer(p.model)
    else:
        tok, eot = tokenizer.train_tokenizer((t for _, t in c.train), p.corpus.vocab_size), tokenizer.EOT
    out = Path(args.out)
    with atomic_path(out / "tokenizer.json") as tmp:
        tok.save(str(tmp))
    metrics = {"vocab_size": tok.get_vocab_size(), "tokenizer": p.model.hf_name if p.model.source == "hf" else "own BPE"}
    for split, files in (("train", c.train), ("val", c.val)):
        ids = tokenizer.encode_files(tok, [t for _, t in files], eot)
        with atomic_path(out / f"{split}.bin") as tmp:
            ids.tofile(tmp)
        metrics[f"{split}_files"] = len(files)
        metrics[f"{split}_bytes"] = sum(len(t.encode()) for _, t in files)
        metrics[f"{split}_tokens"] = int(ids.size)
    write_jsonl(out / "pairs_tokens.jsonl", tokenise_pairs(tok, rows))
    write_json(out / "removed.json", {"duplicates": c.duplicates, "contaminated": c.contaminated,
                                      "too_large": c.too_large})
    metrics.update(duplicates=len(c.duplicates), contaminated=len(c.contaminated),
                   too_large=len(c.too_large))
    write_json(out / "metrics.json", metrics)
    log.info("corpus metrics: %s", json.dumps(metrics))


def load_tokens(path: str | Path) -> np.ndarray:
    """Memory-mapped uint16 token ids of a split file."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: run `dvc repro corpus` first")
    return np.memmap(path, dtype=np.uint16, mode="r")
