"""Mutation operators: one minimal edit per mutant, prompt untouched, code still parses."""
import ast

import pytest

from emergence.data.mutate import KINDS, mutants

PROMPT = 'def f(xs, k):\n    """Doc: keep it."""\n'
BODY = ("    total = 0\n"
        "    for i in range(len(xs)):\n"
        "        if xs[i] < k and i > 0:\n"
        "            total += xs[i] * 2\n"
        "    return max(total, k)\n")
CODE = PROMPT + BODY


@pytest.fixture(scope="module")
def all_mutants():
    return mutants(CODE, body_line=3)


def by_kind(ms, kind):
    return [m for m in ms if m.kind == kind]


def test_every_kind_is_produced(all_mutants):
    assert {m.kind for m in all_mutants} == set(KINDS)


def test_mutants_parse_keep_prompt_and_differ(all_mutants):
    for m in all_mutants:
        ast.parse(m.code)
        assert m.code.startswith(PROMPT) and m.code != CODE


def test_edit_is_local_and_spans_are_exact(all_mutants):
    for m in all_mutants:
        a, b = m.span
        oa, ob = m.original_span
        assert a == oa
        assert m.code[:a] == CODE[:a] and m.code[b:] == CODE[ob:]
        assert m.line == m.code.count("\n", 0, a) + 1


@pytest.mark.parametrize("kind, expected", [
    ("comparison_swap", "if xs[i] <= k and i > 0:"),
    ("arithmetic_swap", "total -= xs[i] * 2"),
    ("arithmetic_swap", "total += xs[i] + 2"),
    ("boolean_swap", "if xs[i] < k or i > 0:"),
    ("negate_condition", "if not (xs[i] < k and i > 0):"),
    ("off_by_one", "for i in range(len(xs) + 1):"),
    ("off_by_one", "total = 1"),
    ("wrong_variable", "return max(total, i)"),
    ("swap_arguments", "return max(k, total)"),
    ("wrong_return", "return None"),
])
def test_expected_mutation_present(all_mutants, kind, expected):
    assert any(expected in m.code for m in by_kind(all_mutants, kind))


def test_drop_statement_removes_one_whole_line(all_mutants):
    drops = by_kind(all_mutants, "drop_statement")
    assert drops
    for m in drops:
        assert m.code.count("\n") == CODE.count("\n") - 1 or "for" in m.description


def test_prompt_is_never_mutated():
    code = 'def g(a, b):\n    """a < b and a + 1"""\n    return a\n'
    for m in mutants(code, body_line=3):
        assert m.line >= 3


def test_deterministic():
    assert mutants(CODE, 3) == mutants(CODE, 3)
