"""Pair building is verified by execution and deterministic; user files are validated row by row."""
import argparse
import json
from pathlib import Path

import pytest
import yaml

from emergence.config import ConfigError, load_params
from emergence.data import pairs
from emergence.data.sandbox import Limits
from emergence.stages import pairs as stage
from emergence.stages.raw import humaneval_source

ROOT = Path(__file__).resolve().parents[1]
LIMITS = Limits(timeout_s=4, cpu_seconds=3)


@pytest.fixture(scope="module")
def built(humaneval):
    return pairs.build_pairs(humaneval[:4], seed=0, max_per_problem=2, candidates_per_problem=4,
                             limits=LIMITS, workers=2)


def test_pairs_are_verified_by_execution(built):
    from emergence.data.sandbox import verify
    assert len(built) >= 6
    checks = []
    for r in built:
        checks += [(r["correct_code"], r["test"], r["entry_point"]),
                   (r["buggy_code"], r["test"], r["entry_point"])]
    statuses = [v.status for v in verify(checks, LIMITS)]
    assert statuses[0::2] == ["passed"] * len(built)
    assert "passed" not in statuses[1::2]
    for r in built:
        assert r["correct_verdict"] == "passed" and r["buggy_verdict"] != "passed"
        assert r["buggy_code"].startswith(r["prompt"]) and r["correct_code"].startswith(r["prompt"])
        a, b = r["span"]
        ca, cb = r["correct_span"]
        assert r["buggy_code"][:a] == r["correct_code"][:ca]
        assert r["buggy_code"][b:] == r["correct_code"][cb:]


def test_several_kinds_and_several_per_problem(built):
    assert len({r["mutation"] for r in built}) >= 3
    assert max(sum(r["task_id"] == t for r in built) for t in {r["task_id"] for r in built}) == 2


def test_deterministic_for_the_seed(humaneval, built):
    again = pairs.build_pairs(humaneval[:4], seed=0, max_per_problem=2, candidates_per_problem=4,
                              limits=LIMITS, workers=2)
    assert again == built
    other = pairs._candidates(humaneval[0], seed=1, limit=4)
    assert [m.code for m in other] != [m.code for m in pairs._candidates(humaneval[0], 0, 4)]


def test_malformed_rows_are_reported_and_valid_rows_kept(tmp_path, built, caplog):
    good = {k: built[0][k] for k in pairs.REQUIRED}
    prompt = good["prompt"]
    lines = [json.dumps(good),
             '{"pair_id": "x", not json',
             json.dumps({**good, "buggy_code": 5}),
             json.dumps({k: v for k, v in good.items() if k != "prompt"}),
             json.dumps({**good, "buggy_code": good["correct_code"]}),
             json.dumps({**good, "pair_id": "x2", "span": [5, 10**6]}),
             json.dumps({**good, "pair_id": "x3"}),
             json.dumps({**good, "pair_id": "syntax", "buggy_code": prompt + "    return (1\n"}),
             json.dumps({**good, "pair_id": "syntax2", "correct_code": prompt + "    if x\n"}),
             json.dumps({**good, "pair_id": "prefix", "buggy_code": "# moved\n" + good["buggy_code"]}),
             json.dumps({**good, "pair_id": "no_entry", "test": "def check(f):\n    pass\n"}),
             json.dumps({**good, "pair_id": "x3"})]
    path = tmp_path / "mine.jsonl"
    path.write_text("\n".join(lines) + "\n")
    rows, problems = pairs.read_pairs(path)
    assert [r["pair_id"] for r in rows] == [good["pair_id"], "x3"]
    found = {(p.line, p.field) for p in problems}
    assert found == {(2, "<json>"), (3, "buggy_code"), (4, "prompt"), (5, "buggy_code"), (6, "span"),
                     (8, "buggy_code"), (9, "correct_code"), (10, "prompt"), (11, "entry_point"),
                     (12, "pair_id")}
    by_line = {p.line: p.message for p in problems}
    assert "column 18" in by_line[2]  # the n of `not`
    assert by_line[8].startswith("does not parse (line") and "does not parse" in by_line[9]
    assert "not a prefix of buggy_code" in by_line[10]
    assert f"{path}:7" in by_line[12]
    assert f"{path}:3: field 'buggy_code'" in caplog.text
    assert f"{path}:8: field 'buggy_code': does not parse" in caplog.text


def test_duplicates_across_files_are_reported(tmp_path, built):
    good = {k: built[0][k] for k in pairs.REQUIRED}
    (tmp_path / "a.jsonl").write_text(json.dumps(good) + "\n")
    (tmp_path / "b.jsonl").write_text(json.dumps(good) + "\n" + json.dumps({**good, "pair_id": "new"}) + "\n")
    seen = {}
    pairs.read_pairs(tmp_path / "a.jsonl", seen)
    rows, problems = pairs.read_pairs(tmp_path / "b.jsonl", seen)
    assert [r["pair_id"] for r in rows] == ["new"]
    assert [(p.line, p.field) for p in problems] == [(1, "pair_id")]
    assert f"{tmp_path / 'a.jsonl'}:1" in problems[0].message


def test_file_without_valid_rows_raises(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"pair_id": 1}\n')
    with pytest.raises(pairs.PairsFormatError, match="no valid pair rows"):
        pairs.read_pairs(path)


def test_user_pairs_with_tests_are_verified_and_drops_say_why(built, caplog):
    row = dict(built[0])
    wrong = {**row, "pair_id": "wrong", "buggy_code": row["correct_code"] + "\n# same behaviour\n"}
    broken = {**row, "pair_id": "broken", "correct_code": row["prompt"] + "    raise KeyError('nope')\n"}
    untested = {k: v for k, v in row.items() if k not in ("test", "correct_verdict", "buggy_verdict")}
    claims = {**untested, "pair_id": "untested", "correct_verdict": "passed", "buggy_verdict": "failed"}
    kept, rejected = pairs.verify_user_pairs([row, wrong, broken, claims], LIMITS, 2, "mine.jsonl")
    assert [r["pair_id"] for r in kept] == [row["pair_id"], "untested"]
    assert kept[1]["correct_verdict"] == kept[1]["buggy_verdict"] == "unverified"
    assert pairs.verification_counts(kept) == {"verified": 1, "unverified": 1}
    by_id = {r["pair_id"]: r for r in rejected}
    assert by_id["wrong"]["reason"] == "buggy code passes the tests"
    assert by_id["wrong"]["buggy_verdict"] == "passed" and by_id["wrong"]["file"] == "mine.jsonl"
    assert by_id["broken"]["correct_verdict"] == "error"
    assert by_id["broken"]["correct_detail"] == "KeyError: 'nope'"
    assert "broken dropped" in caplog.text and "KeyError: 'nope'" in caplog.text


def run_stage(tmp_path, monkeypatch, extra_files, **overrides):
    """The pairs stage on one HumanEval problem, run from `tmp_path` as the repository root."""
    monkeypatch.chdir(tmp_path)
    sets = [f"pairs.extra_files={json.dumps(extra_files)}", "pairs.max_problems=1", "pairs.min_pairs=0",
            "pairs.max_per_problem=1", "pairs.candidates_per_problem=2", "sandbox.workers=2",
            "sandbox.timeout_s=4"] + [f"{k}={v}" for k, v in overrides.items()]
    params = load_params(ROOT / "params.yaml", sets)
    monkeypatch.setattr(stage, "load_params", lambda _: params)
    stage.main(argparse.Namespace(params="params.yaml", humaneval=str(humaneval_source()),
                                  out=str(tmp_path / "out")))
    read = lambda name: [json.loads(x) for x in (tmp_path / "out" / name).read_text().splitlines()]  # noqa: E731
    return read("pairs.jsonl"), read("rejected.jsonl"), json.loads((tmp_path / "out" / "metrics.json").read_text())


def test_stage_writes_rejected_rows_and_counts_unverified(tmp_path, monkeypatch, built):
    good = {k: built[0][k] for k in pairs.REQUIRED}
    tested = {**good, "pair_id": "mine/0", "test": built[0]["test"], "entry_point": built[0]["entry_point"]}
    lines = [json.dumps(tested),
             json.dumps({**tested, "pair_id": "mine/1", "buggy_code": good["correct_code"] + "\n# same\n"}),
             json.dumps({**good, "pair_id": "mine/2"}),
             json.dumps({**good, "pair_id": "mine/3", "buggy_code": good["prompt"] + "    return (\n"})]
    (tmp_path / "pairs").mkdir()
    (tmp_path / "pairs" / "mine.jsonl").write_text("\n".join(lines) + "\n")
    rows, rejected, metrics = run_stage(tmp_path, monkeypatch, ["pairs/mine.jsonl"])
    user = {r["pair_id"]: r for r in rows if r["source"] == "user"}
    assert set(user) == {"mine/0", "mine/2"}
    assert [(r["pair_id"], r["buggy_verdict"]) for r in rejected if "pair_id" in r] == [("mine/1", "passed")]
    assert [(r["line"], r["field"]) for r in rejected if r["reason"] == "malformed"] == [(4, "buggy_code")]
    assert metrics["unverified"] == 1 and metrics["verified"] == len(rows) - 1
    assert metrics["malformed_user_rows"] == 1 and metrics["rejected_user_rows"] == 2


def test_missing_extra_file_fails_before_any_verification(tmp_path, monkeypatch):
    def no_work(*a, **k):
        raise AssertionError("verification started")
    monkeypatch.setattr(pairs.sandbox, "verify", no_work)
    monkeypatch.setattr(pairs, "load_humaneval", no_work)
    with pytest.raises(ConfigError, match="pairs/absent.jsonl, which does not exist: add"):
        run_stage(tmp_path, monkeypatch, ["pairs/absent.jsonl"])


@pytest.mark.parametrize("path", ["data/mbpp.jsonl", "/tmp/pairs/x.jsonl", "pairs/../data/x.jsonl", "pairs"])
def test_extra_files_must_live_under_the_pairs_directory(path):
    with pytest.raises(ConfigError, match="pairs.extra_files.*under pairs/"):
        load_params(ROOT / "params.yaml", [f"pairs.extra_files={json.dumps([path])}"])


def test_pairs_directory_is_a_dependency_and_rejected_rows_an_output():
    spec = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]["pairs"]
    assert "pairs" in spec["deps"] and "artifacts/pairs/rejected.jsonl" in spec["outs"]
    assert (ROOT / "pairs").is_dir()


def test_example_pairs_are_valid_and_verified():
    rows, problems = pairs.read_pairs(ROOT / "pairs" / "example.jsonl")
    assert not problems and len(rows) >= 3
    kept, rejected = pairs.verify_user_pairs(rows, LIMITS, 2, "pairs/example.jsonl")
    assert not rejected and pairs.verification_counts(kept) == {"verified": len(rows), "unverified": 0}
