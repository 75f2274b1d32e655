"""AST mutation operators that turn a correct solution into a plausible buggy one.

Every operator finds its sites on the parsed solution and proposes a minimal textual
edit (the operator token, a constant, a name, one statement), so formatting outside the
edited span is kept and each mutant differs from the original in exactly one place.
Only code at or after ``body_line`` is mutated: the prompt and signature stay intact.

Kinds (each mirrors a common real bug):
comparison_swap   ``<`` -> ``<=``, ``==`` -> ``!=``, ``in`` -> ``not in`` ...
off_by_one        an integer constant +-1, or ``+ 1`` / ``- 1`` on a range or slice bound
arithmetic_swap   ``+`` <-> ``-``, ``*`` -> ``+``, ``/`` <-> ``//``, ``%`` -> ``//`` ...
boolean_swap      ``and`` <-> ``or``
negate_condition  ``if c`` -> ``if not c`` (if / while / ternary / comprehension filter)
wrong_variable    a read of a local name replaced by another name of the same function
drop_statement    one statement of a block with several removed
swap_arguments    the first two positional arguments of a call swapped
wrong_return      the returned value replaced (flipped bool, negation, other name, None)
"""
from __future__ import annotations

import ast
import dataclasses
import re
from typing import Iterator

KINDS = ("comparison_swap", "off_by_one", "arithmetic_swap", "boolean_swap",
         "negate_condition", "wrong_variable", "drop_statement", "swap_arguments",
         "wrong_return")

COMPARE_SWAP = {ast.Lt: "<=", ast.LtE: "<", ast.Gt: ">=", ast.GtE: ">", ast.Eq: "!=",
                ast.NotEq: "==", ast.In: "not in", ast.NotIn: "in", ast.Is: "is not",
                ast.IsNot: "is"}
ARITH_SWAP = {ast.Add: "-", ast.Sub: "+", ast.Mult: "+", ast.Div: "//", ast.FloorDiv: "/",
              ast.Mod: "//", ast.Pow: "*"}
BOOL_SWAP = {ast.And: "or", ast.Or: "and"}
OPERATOR_TOKEN = re.compile(rb"not\s+in|is\s+not|[^\s()\\]+")
ATOMS = (ast.Name, ast.Call, ast.Attribute, ast.Subscript, ast.Constant, ast.List,
         ast.Tuple, ast.Dict, ast.Set)


@dataclasses.dataclass(frozen=True)
class Mutant:
    """One mutant: the full mutated code and where it differs from the original.

    ``span`` is the half-open character range of the new text in ``code``,
    ``original_span`` that of the text it replaced in the original (both start at the
    same offset, since the code before the edit is unchanged); ``line`` is 1-based.
    """

    kind: str
    code: str
    line: int
    span: tuple[int, int]
    original_span: tuple[int, int]
    description: str


@dataclasses.dataclass(frozen=True)
class _Edit:
    kind: str
    start: int  # byte offsets into the original source
    end: int
    text: bytes
    description: str


class _Source:
    """Byte offsets of AST positions (col_offset counts UTF-8 bytes)."""

    def __init__(self, code: str):
        self.raw = code.encode()
        self.line_starts = [0]
        for i, b in enumerate(self.raw):
            if b == 0x0A:
                self.line_starts.append(i + 1)

    def offset(self, line: int, col: int) -> int:
        return self.line_starts[line - 1] + col

    def span(self, node: ast.AST) -> tuple[int, int]:
        return (self.offset(node.lineno, node.col_offset),
                self.offset(node.end_lineno, node.end_col_offset))

    def text(self, node: ast.AST) -> bytes:
        a, b = self.span(node)
        return self.raw[a:b]

    def operator_between(self, left: ast.AST, right: ast.AST) -> tuple[int, int]:
        """Byte span of the operator token in the gap between two operands."""
        gap_start, gap_end = self.span(left)[1], self.span(right)[0]
        m = OPERATOR_TOKEN.search(self.raw, gap_start, gap_end)
        if m is None:
            raise ValueError("no operator between operands")
        return m.start(), m.end()


def _wrap(node: ast.AST, text: bytes) -> bytes:
    return text if isinstance(node, ATOMS) else b"(" + text + b")"


def _scopes(tree: ast.Module) -> dict[ast.AST, list[str]]:
    """For every node, the sorted local names (params and assignments) of its innermost function."""
    owner: dict[ast.AST, list[str]] = {}

    def visit(fn: ast.AST, names: list[str]) -> None:
        for child in ast.iter_child_nodes(fn):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                args = child.args
                params = [a.arg for a in args.posonlyargs + args.args + args.kwonlyargs]
                params += [a.arg for a in (args.vararg, args.kwarg) if a]
                stores = {n.id for n in ast.walk(child)
                          if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
                inner = sorted(set(params) | stores)
                owner[child] = inner
                visit(child, inner)
            else:
                owner[child] = names
                visit(child, names)

    visit(tree, [])
    return owner


def _edits(tree: ast.Module, src: _Source, body_start: int) -> Iterator[_Edit]:
    scope = _scopes(tree)
    starts = lambda n: src.offset(n.lineno, n.col_offset)  # noqa: E731
    for node in ast.walk(tree):
        for field in ("body", "orelse", "finalbody"):
            block = getattr(node, field, None)
            if isinstance(block, list) and len(block) >= 2:
                yield from _drops([s for s in block if starts(s) >= body_start], src)
        if hasattr(node, "lineno") and starts(node) >= body_start:
            yield from _node_edits(node, src, scope.get(node, []))


def _node_edits(node: ast.AST, src: _Source, names: list[str]) -> Iterator[_Edit]:
    if isinstance(node, ast.Compare):
        operands = [node.left, *node.comparators]
        for i, op in enumerate(node.ops):
            a, b = src.operator_between(operands[i], operands[i + 1])
            new = COMPARE_SWAP[type(op)].encode()
            yield _Edit("comparison_swap", a, b, new, f"{src.raw[a:b].decode()!r} -> {new.decode()!r}")
    elif isinstance(node, (ast.BinOp, ast.AugAssign)) and type(node.op) in ARITH_SWAP:
        left, right = (node.left, node.right) if isinstance(node, ast.BinOp) else (node.target, node.value)
        a, b = src.operator_between(left, right)
        old = src.raw[a:b].decode()
        new = ARITH_SWAP[type(node.op)] + ("=" if isinstance(node, ast.AugAssign) else "")
        yield _Edit("arithmetic_swap", a, b, new.encode(), f"{old!r} -> {new!r}")
    elif isinstance(node, ast.BoolOp):
        a, b = src.operator_between(node.values[0], node.values[1])
        new = BOOL_SWAP[type(node.op)]
        yield _Edit("boolean_swap", a, b, new.encode(), f"{src.raw[a:b].decode()!r} -> {new!r}")
    elif isinstance(node, ast.Constant) and type(node.value) is int:
        a, b = src.span(node)
        for delta in (1, -1):
            new = str(node.value + delta)
            yield _Edit("off_by_one", a, b, new.encode(), f"{node.value} -> {new}")
    elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load) and node.id in names:
        a, b = src.span(node)
        for other in names:
            if other != node.id:
                yield _Edit("wrong_variable", a, b, other.encode(), f"{node.id} -> {other}")
    elif isinstance(node, ast.Return) and node.value is not None:
        yield from _return_edits(node.value, src, names)
    elif isinstance(node, ast.Call):
        yield from _call_edits(node, src)
    if isinstance(node, ast.Slice):
        for bound in (node.lower, node.upper):
            if bound is not None and not isinstance(bound, ast.Constant):
                yield from _shift_bound(bound, src)
    if isinstance(node, (ast.If, ast.While, ast.IfExp)):
        yield from _negations(node.test, src)
    if isinstance(node, ast.comprehension):
        for cond in node.ifs:
            yield from _negations(cond, src)


def _shift_bound(bound: ast.AST, src: _Source) -> Iterator[_Edit]:
    a, b = src.span(bound)
    text = _wrap(bound, src.text(bound))
    for suffix in (b" + 1", b" - 1"):
        yield _Edit("off_by_one", a, b, text + suffix,
                    f"{src.text(bound).decode()!r} -> {(text + suffix).decode()!r}")


def _negations(test: ast.AST, src: _Source) -> Iterator[_Edit]:
    a, b = src.span(test)
    if isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not):
        new = src.text(test.operand)
        new = new if isinstance(test.operand, ATOMS) else b"(" + new + b")"
    else:
        new = b"not " + _wrap(test, src.text(test))
    yield _Edit("negate_condition", a, b, new, f"{src.text(test).decode()!r} -> {new.decode()!r}")


def _return_edits(value: ast.AST, src: _Source, names: list[str]) -> Iterator[_Edit]:
    a, b = src.span(value)
    old = src.text(value).decode()
    if isinstance(value, ast.Constant) and isinstance(value.value, bool):
        news = [str(not value.value)]
    elif isinstance(value, (ast.Compare, ast.BoolOp)) or (
            isinstance(value, ast.UnaryOp) and isinstance(value.op, ast.Not)):
        news = ["not " + _wrap(value, src.text(value)).decode()]
    elif isinstance(value, ast.Name):
        news = [n for n in names if n != value.id] or ["None"]
    else:
        news = ["None"]
    for new in news:
        yield _Edit("wrong_return", a, b, new.encode(), f"return {old!r} -> return {new!r}")


def _call_edits(call: ast.Call, src: _Source) -> Iterator[_Edit]:
    if isinstance(call.func, ast.Name) and call.func.id == "range":
        for arg in call.args:
            if not isinstance(arg, ast.Constant):
                yield from _shift_bound(arg, src)
    args = call.args
    if len(args) >= 2 and not any(isinstance(x, ast.Starred) for x in args[:2]):
        first, second = src.text(args[0]), src.text(args[1])
        if first != second:
            a, b = src.span(args[0])[0], src.span(args[1])[1]
            between = src.raw[src.span(args[0])[1]:src.span(args[1])[0]]
            yield _Edit("swap_arguments", a, b, second + between + first,
                        f"({first.decode()}, {second.decode()}) -> ({second.decode()}, {first.decode()})")


def _drops(block: list[ast.stmt], src: _Source) -> Iterator[_Edit]:
    for stmt in block:
        docstring = isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant)
        if docstring or isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            continue
        a, b = src.span(stmt)
        line_start = src.line_starts[stmt.lineno - 1]
        line_end = src.raw.find(b"\n", b)
        line_end = len(src.raw) if line_end < 0 else line_end + 1
        alone = not src.raw[line_start:a].strip() and not src.raw[b:line_end].strip()
        if alone:
            first = src.text(stmt).decode().splitlines()[0]
            yield _Edit("drop_statement", line_start, line_end, b"", f"dropped {first!r}")


def mutants(code: str, body_line: int) -> list[Mutant]:
    """Every single-site mutant of `code` whose edit starts on or after line `body_line`.

    Mutants that do not parse, or that leave the code unchanged, are not returned.
    The order is deterministic (AST walk order, then operator order).
    """
    tree = ast.parse(code)
    src = _Source(code)
    body_start = src.line_starts[body_line - 1]
    out, seen = [], set()
    for e in _edits(tree, src, body_start):
        new_raw = src.raw[:e.start] + e.text + src.raw[e.end:]
        if new_raw == src.raw or new_raw in seen:
            continue
        new = new_raw.decode()
        try:
            ast.parse(new)
        except SyntaxError:
            continue
        seen.add(new_raw)
        start = len(src.raw[:e.start].decode())
        span = (start, start + len(e.text.decode()))
        original_span = (start, start + len(src.raw[e.start:e.end].decode()))
        line = new.count("\n", 0, start) + 1
        out.append(Mutant(e.kind, new, line, span, original_span, e.description))
    return out
