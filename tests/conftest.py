import os
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("WANDB_DIR", str(ROOT / ".cache" / "wandb"))
os.environ.setdefault("WANDB_CONFIG_DIR", str(ROOT / ".cache" / "wandb-config"))
os.environ.setdefault("NUMBA_CACHE_DIR", str(ROOT / ".cache" / "numba"))
os.environ.setdefault("MPLCONFIGDIR", str(ROOT / ".cache" / "matplotlib"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ["DVC_NO_ANALYTICS"] = "1"
os.environ.setdefault("MKL_DYNAMIC", "FALSE")     # as the CLI sets them (emergence.cli.DETERMINISM)
os.environ.setdefault("MKL_CBWR", "AUTO,STRICT")

from emergence.cli import keep_freed_memory  # noqa: E402  (as the CLI sets it before every stage)

keep_freed_memory()


@pytest.fixture(scope="session")
def humaneval():
    from emergence.data.pairs import load_humaneval
    from emergence.stages.raw import humaneval_source
    return load_humaneval(humaneval_source())


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory, humaneval):
    """A small corpus directory as the `corpus` stage writes it (tokenizer, bins, tokenised pairs)."""
    from emergence.data import corpus, mutate, tokenizer
    from emergence.io import write_jsonl
    from emergence.stages.corpus import tokenise_pairs
    out = tmp_path_factory.mktemp("corpus")
    files = [f for f in corpus.stdlib_files() if f.parts[0] in ("json", "email")][:30]
    root = Path(sysconfig.get_paths()["stdlib"])
    texts = [(root / f).read_text(errors="replace") for f in files]
    tok = tokenizer.train_tokenizer(texts, vocab_size=300)
    tok.save(str(out / "tokenizer.json"))
    tokenizer.encode_files(tok, texts[:-3]).tofile(out / "train.bin")
    tokenizer.encode_files(tok, texts[-3:]).tofile(out / "val.bin")
    rows = []
    for p in humaneval[:12]:
        m = mutate.mutants(p["prompt"] + p["canonical_solution"], p["prompt"].count("\n") + 1)[0]
        rows.append(dict(pair_id=f"{p['task_id']}/0", task_id=p["task_id"], prompt=p["prompt"],
                         correct_code=p["prompt"] + p["canonical_solution"], buggy_code=m.code,
                         mutation=m.kind, span=list(m.span), correct_span=list(m.original_span)))
    write_jsonl(out / "pairs_tokens.jsonl", tokenise_pairs(tok, rows))
    return out


TINY = ["model.n_layer=1", "model.n_head=2", "model.d_model=32", "model.d_mlp=64", "model.n_ctx=64",
        "train.max_steps=12", "train.batch_size=4", "train.warmup_steps=2", "train.val_windows=8",
        "train.checkpoints.log_until=4", "train.checkpoints.n_linear=2",
        "monitors.repeat_length=16", "monitors.batch=4", "monitors.icl_early=5", "monitors.icl_windows=8"]


@pytest.fixture
def tiny_params():
    from emergence.config import load_params
    return load_params(ROOT / "params.yaml", TINY)


def pytest_collection_modifyitems(config, items):
    """The tests that read a pipeline run once it is likely done, and meanwhile the unit tests (see
    pipelines.py): those of the short pipelines (`pipelines.SHORT`) halfway through the unit tests, so
    that the cores are still shared when they run, and those of whole pipelines last."""
    import pipelines
    unit, short, whole = [], [], []
    for item in items:
        reads = set(getattr(item, "fixturenames", ())) & pipelines.FIXTURES.keys()
        (whole if reads - pipelines.SHORT else short if reads else unit).append(item)
    items[:] = unit[:len(unit) // 2] + short + unit[len(unit) // 2:] + whole


def pytest_collection_finish(session):
    """Start, in the background, the pipelines that the selected tests read."""
    import pipelines
    if session.config.option.collectonly:
        return
    used = {f for item in session.items for f in getattr(item, "fixturenames", ())}
    pipelines.start([name for fixture, names in pipelines.FIXTURES.items() if fixture in used for name in names],
                    session.config._tmp_path_factory.mktemp)


def pytest_sessionfinish(session):
    import pipelines
    pipelines.stop()


_threads: list[int] = []  # torch's own thread count in this process


def pytest_runtest_setup(item):
    """One torch thread in this process while background pipelines run (two thread pools on two busy
    cores stall each other), torch's own count again once they are done."""
    import pipelines
    import torch
    if not _threads:
        _threads.append(torch.get_num_threads())
    torch.set_num_threads(1 if pipelines.running() else _threads[0])
