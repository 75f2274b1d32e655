"""Pair building is verified by execution and deterministic; user files are validated row by row."""
import json

import pytest

from emergence.data import pairs
from emergence.data.sandbox import Limits

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
    lines = [json.dumps(good),
             "{not json",
             json.dumps({**good, "buggy_code": 5}),
             json.dumps({k: v for k, v in good.items() if k != "prompt"}),
             json.dumps({**good, "buggy_code": good["correct_code"]}),
             json.dumps({**good, "pair_id": "x2", "span": [5, 10**6]}),
             json.dumps({**good, "pair_id": "x3"})]
    path = tmp_path / "mine.jsonl"
    path.write_text("\n".join(lines) + "\n")
    rows, problems = pairs.read_pairs(path)
    assert [r["pair_id"] for r in rows] == [good["pair_id"], "x3"]
    found = {(p.line, p.field) for p in problems}
    assert found == {(2, "<json>"), (3, "buggy_code"), (4, "prompt"), (5, "buggy_code"), (6, "span")}
    assert f"{path}:3: field 'buggy_code'" in caplog.text


def test_file_without_valid_rows_raises(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"pair_id": 1}\n')
    with pytest.raises(pairs.PairsFormatError, match="no valid pair rows"):
        pairs.read_pairs(path)


def test_user_pairs_with_tests_are_verified(built):
    row = dict(built[0])
    wrong = {**row, "pair_id": "wrong", "buggy_code": row["correct_code"] + "\n# same behaviour\n"}
    untested = {k: v for k, v in row.items() if k not in ("test", "correct_verdict", "buggy_verdict")}
    kept = pairs.verify_user_pairs([row, wrong, {**untested, "pair_id": "untested"}], LIMITS, 2)
    assert [r["pair_id"] for r in kept] == [row["pair_id"], "untested"]
    assert kept[1]["buggy_verdict"] == "not_run"
