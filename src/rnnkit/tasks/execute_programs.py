"""The programs of Zaremba & Sutskever, "Learning to Execute" (arXiv:1410.4615, 2014), and the
restricted evaluator that runs them.

A program is generated from two numbers: ``length``, the digits of its numbers, and
``nesting``, how many operations are composed. Each operation takes its operands from the
result of the previous one (at a random position) and from fresh numbers of up to ``length``
digits; the program ends in ``print(EXPR)`` and its target is the printed integer. The
operations are the paper's (its released code's ``utils/operations.lua``):

- ``(a+b)``, ``(a-b)``;
- ``(a*k)`` or ``(k*a)``, k a small number in [1, 4·length];
- ``a`` (the operand as it is);
- ``v=a`` then ``(v+b)`` or ``(v-b)`` (a variable assignment);
- ``v=a`` then ``for x in range(k):v+=b`` (or ``-=``), k in [1, 4·length] (a small loop);
- ``(c if a<b else d)`` or with ``>`` (a conditional with a comparison).

The ``addition`` family is the paper's addition task: ``print((a+b))`` with two numbers of
exactly ``length`` digits.

The target is what the program prints, computed by ``run_program``: a small interpreter of
this grammar over Python's own parser (``ast.parse``: text to a tree, nothing executed), that
refuses anything else with one line naming the construct and where it stands. Nothing a user
passes in is given to ``eval`` or ``exec``.

Grammar (statements one a line; the last one prints)::

    program   := (assign NEWLINE)* 'print(' expr ')'
    assign    := NAME '=' expr | NAME ('+=' | '-=') expr
               | 'for' NAME 'in range(' expr '):' assign
    expr      := INTEGER | NAME | expr ('+' | '-' | '*') expr | '(' expr ')'
               | expr 'if' expr ('<' | '>') expr 'else' expr
"""

from __future__ import annotations

import ast
import random

LOOP_VARIABLE = "x"
NAMES = "abcdefghijklmnopqrstuvwyz"  # the generator's variables: single letters but the loop's
MAX_PROGRAM_CHARS = 4000  # a longer input is refused before it is parsed
MAX_LOOP = 10_000  # range(k): at most this many iterations
MAX_DIGITS = 100  # a value of more digits is refused (x=x*x ... grows without bound)
SOURCE_CHARS = "\n ()*+-:<=>0123456789abcdefghijklmnopqrstuvwxyz"  # every generated character
TARGET_CHARS = "-0123456789"


class ProgramError(ValueError):
    """A program outside the grammar, or one that fails to run: one line, naming where."""


# ---- generating -----------------------------------------------------------------------------
class _Composer:
    """One program being composed: the expression stack, the unused names, the code lines."""

    def __init__(self, rng: random.Random, length: int) -> None:
        self.rng, self.length = rng, length
        self.stack: list[str] = []
        self.names = list(NAMES)
        rng.shuffle(self.names)
        self.code: list[str] = []

    def number(self) -> str:
        return str(self.rng.randint(1, 10**self.length - 1))

    def small(self) -> int:
        return self.rng.randint(1, 4 * self.length)

    def operands(self, n: int) -> list[str]:
        """n operands: the previous operation's result (if any) at a random position, the rest
        fresh numbers (the paper's ``get_operands``)."""
        out = [self.stack.pop() if self.stack else self.number()]
        out += [self.number() for _ in range(n - 1)]
        self.rng.shuffle(out)
        return out

    def plus_minus(self) -> str:
        return self.rng.choice("+-")

    # the operations: each appends its code lines and returns its expression
    def pair(self) -> str:
        a, b = self.operands(2)
        return f"({a}{self.plus_minus()}{b})"

    def small_mul(self) -> str:
        (a,), k = self.operands(1), self.small()
        return f"({a}*{k})" if self.rng.random() < 0.5 else f"({k}*{a})"

    def equality(self) -> str:
        return self.operands(1)[0]

    def variable(self) -> str:
        v, (a, b) = self.names.pop(), self.operands(2)
        self.code.append(f"{v}={a}")
        return f"({v}{self.plus_minus()}{b})"

    def loop(self) -> str:
        v, (a, b), k = self.names.pop(), self.operands(2), self.small()
        self.code += [f"{v}={a}", f"for {LOOP_VARIABLE} in range({k}):{v}{self.plus_minus()}={b}"]
        return v

    def conditional(self) -> str:
        a, b, c, d = self.operands(4)
        return f"({c} if {a}{self.rng.choice('<>')}{b} else {d})"

    OPERATIONS = ("pair", "small_mul", "equality", "variable", "loop", "conditional")


def generate_program(rng: random.Random, length: int, nesting: int, family: str = "programs"):
    """One program's text (its lines joined by newlines), of ``family`` "programs" or
    "addition" (which ignores ``nesting``)."""
    if family == "addition":
        a, b = (rng.randint(10 ** (length - 1), 10**length - 1) for _ in range(2))
        return f"print(({a}+{b}))"
    c = _Composer(rng, length)
    for _ in range(nesting):
        c.stack.append(getattr(c, rng.choice(_Composer.OPERATIONS))())
    return "\n".join([*c.code, f"print({c.stack.pop()})"])


# ---- running --------------------------------------------------------------------------------
_WORDS = {
    ast.Call: "a function call",
    ast.If: "an if statement (the grammar's conditional is (a if b<c else d))",
    ast.While: "a while loop",
    ast.UnaryOp: "a unary operator (numbers are written without a sign)",
    ast.BoolOp: "and/or",
    ast.Div: "division '/'",
    ast.FloorDiv: "division '//'",
    ast.Mod: "'%'",
    ast.Pow: "'**'",
    ast.Import: "an import",
    ast.ImportFrom: "an import",
    ast.FunctionDef: "a function definition",
    ast.Attribute: "an attribute",
    ast.Subscript: "indexing",
    ast.Lambda: "a lambda",
    ast.Expr: "an expression statement (only the last line prints)",
}


def _fail(node: ast.AST, what: str) -> ProgramError:
    line, col = getattr(node, "lineno", 1), getattr(node, "col_offset", 0) + 1
    return ProgramError(f"line {line}, column {col}: {what}")


def _unsupported(node: ast.AST) -> ProgramError:
    kind = type(node)
    name = _WORDS.get(kind, f"{kind.__name__} ({ast.unparse(node)[:40]!r})")
    return _fail(node, f"unsupported construct: {name}")


def _check_size(node: ast.AST, value: int) -> int:
    if len(str(abs(value))) > MAX_DIGITS:
        raise _fail(node, f"a value of more than {MAX_DIGITS} digits")
    return value


def _value(node: ast.expr, env: dict[str, int], text: str) -> int:
    """The integer an expression of the grammar evaluates to."""
    if isinstance(node, ast.Constant):
        literal = ast.get_source_segment(text, node) or ""
        if type(node.value) is not int or not literal.isdigit():
            raise _fail(node, f"unsupported literal {literal or node.value!r}: only integers")
        return _check_size(node, node.value)
    if isinstance(node, ast.Name):
        if node.id not in env:
            raise _fail(node, f"name {node.id!r} is not defined")
        return env[node.id]
    if isinstance(node, ast.BinOp):
        ops = {ast.Add: int.__add__, ast.Sub: int.__sub__, ast.Mult: int.__mul__}
        if type(node.op) not in ops:
            what = _WORDS.get(type(node.op), f"the operator {type(node.op).__name__}")
            raise _fail(node, f"unsupported construct: {what}")
        left, right = _value(node.left, env, text), _value(node.right, env, text)
        return _check_size(node, ops[type(node.op)](left, right))
    if isinstance(node, ast.IfExp):
        test = node.test
        if not (
            isinstance(test, ast.Compare)
            and len(test.ops) == 1
            and isinstance(test.ops[0], (ast.Lt, ast.Gt))
        ):
            raise _fail(test, "unsupported condition: the grammar compares two values, a<b or a>b")
        a, b = _value(test.left, env, text), _value(test.comparators[0], env, text)
        taken = node.body if (a < b if isinstance(test.ops[0], ast.Lt) else a > b) else node.orelse
        return _value(taken, env, text)
    raise _unsupported(node)


def _target(node: ast.expr) -> str:
    if not isinstance(node, ast.Name):
        raise _fail(node, "unsupported assignment target: assign to a name")
    if node.id in ("print", "range"):
        raise _fail(node, f"cannot assign to {node.id!r}")
    return node.id


def _assign(stmt: ast.stmt, env: dict[str, int], text: str) -> None:
    if isinstance(stmt, ast.Assign):
        if len(stmt.targets) != 1:
            raise _fail(stmt, "unsupported: one name per assignment")
        env[_target(stmt.targets[0])] = _value(stmt.value, env, text)
    elif isinstance(stmt, ast.AugAssign):
        name = _target(stmt.target)
        if not isinstance(stmt.op, (ast.Add, ast.Sub)):
            raise _fail(stmt, "unsupported augmented assignment: only += and -=")
        if name not in env:
            raise _fail(stmt.target, f"name {name!r} is not defined")
        sign = 1 if isinstance(stmt.op, ast.Add) else -1
        env[name] = _check_size(stmt, env[name] + sign * _value(stmt.value, env, text))
    else:
        raise _unsupported(stmt)


def _statement(stmt: ast.stmt, env: dict[str, int], text: str) -> None:
    if not isinstance(stmt, ast.For):
        return _assign(stmt, env, text)
    it = stmt.iter
    if not (
        isinstance(it, ast.Call)
        and isinstance(it.func, ast.Name)
        and it.func.id == "range"
        and len(it.args) == 1
        and not it.keywords
    ):
        raise _fail(it, "unsupported loop: the grammar loops over range(k)")
    if stmt.orelse or len(stmt.body) != 1 or isinstance(stmt.body[0], ast.For):
        raise _fail(stmt, "unsupported loop body: one assignment, no else")
    k = _value(it.args[0], env, text)
    if not 0 <= k <= MAX_LOOP:
        raise _fail(it, f"range({k}): the grammar loops 0 to {MAX_LOOP:,} times")
    name = _target(stmt.target)
    for i in range(k):
        env[name] = i
        _assign(stmt.body[0], env, text)


def run_program(text: str) -> int:
    """What ``text``, a program of the grammar (module docstring), prints.

    Raises:
        ProgramError: a syntax error or anything outside the grammar, as one line naming the
            construct and its line and column.
    """
    if len(text) > MAX_PROGRAM_CHARS:
        raise ProgramError(f"a program of {len(text):,} characters: at most {MAX_PROGRAM_CHARS:,}")
    try:
        tree = ast.parse(text, mode="exec")
    except SyntaxError as e:
        raise ProgramError(f"line {e.lineno}, column {e.offset}: syntax error: {e.msg}") from None
    *body, last = tree.body or [None]
    if not (
        isinstance(last, ast.Expr)
        and isinstance(last.value, ast.Call)
        and isinstance(last.value.func, ast.Name)
        and last.value.func.id == "print"
        and len(last.value.args) == 1
        and not last.value.keywords
    ):
        line = getattr(last, "lineno", 1)
        raise ProgramError(f"line {line}: a program ends with print(EXPR), one expression")
    env: dict[str, int] = {}
    for stmt in body:
        _statement(stmt, env, text)
    return _value(last.value.args[0], env, text)
