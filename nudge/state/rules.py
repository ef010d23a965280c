"""Rules: the expressions of segments, trigger conditions and the incentive, compiled once.

The syntax is a small, safe subset of Python expressions, parsed with `ast` and turned
into closures; nothing is ever passed to `eval` or `compile`. Allowed: feature names
(nudge/state/features.py), numbers, strings, `true`/`false`/`none`, `and`/`or`/`not`,
comparisons (chained too, and `in` / `not in` a list of constants), `+ - * /`, the
category functions `views_7d("shoes")` (views_1d/7d/30d, adds_1d/7d/30d), `min`, `max`,
`abs`, and in trigger conditions `event.<field>` (product_id, name, price, quantity,
category, revenue, email, first_name, consent). A missing value is `none`: it equals
`none` and nothing else, orders before nothing (`<`, `>` with none are false) and makes
arithmetic none. A bad rule fails at start-up with its key path and the reason.

Each rule also knows when its truth may change with no new event: the earliest of the
times its features change (nudge/state/features.py), where a clock feature compared with a
constant counts only at the instant it crosses that constant. "No order for 90 days" is
thus re-evaluated once, 90 days after the last order, not every day.

>>> from nudge.core.timefmt import DAY
>>> from nudge.state.customer import Customer
>>> from nudge.state.features import Context, Env
>>> rule = compile_rule("orders_total > 0 and days_since_last_order >= 90", "segments.lapsed")
>>> c = Customer(); c.orders, c.first_order, c.last_order = 1, 10 * DAY, 10 * DAY
>>> ctx = Context(c, 50 * DAY, Env())
>>> rule.test(ctx), rule.next_change(ctx) == 100 * DAY
(False, True)
>>> compile_rule("ordrs_30d > 1", "segments.vip")  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
nudge.core.errors.ConfigError: config segments.vip: unknown name 'ordrs_30d' (did you mean ...)
"""

from __future__ import annotations

import ast
import difflib
import math
import operator
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from nudge.core.errors import ConfigError
from nudge.state.features import (
    CATEGORY_FUNCTIONS,
    FEATURES,
    MISSING,
    Context,
    category_count,
    category_expiry,
)

Fn = Callable[[Context], Any]
Next = Callable[[Context], int | None]
CONSTANTS = {"true": True, "false": False, "none": None, "True": True, "False": False,
             "None": None}
EVENT_FIELDS = ("product_id", "name", "price", "quantity", "category", "revenue", "email",
                "first_name", "consent")
# Day counts are whole numbers: "> 89" and ">= 90" flip at the same instant.
INTEGER_CLOCKS = frozenset(("days_since_last_order", "days_since_first_order",
                            "days_since_last_visit", "days_since_first_seen"))


@dataclass(frozen=True, slots=True)
class Rule:
    text: str
    test: Callable[[Context], bool]
    next_change: Next  # the earliest time > ctx.t its truth may change, or None
    features: frozenset[str]  # the feature names it reads


def _never(ctx: Context) -> int | None:
    return None


def _after(ctx: Context, times: list[int | None]) -> int | None:
    later = [t for t in times if t is not None and t > ctx.t]
    return min(later) if later else None


def _earliest(nexts: list[Next]) -> Next:
    """The earliest of several next-change functions; those that can never fire dropped."""
    live = [n for n in nexts if n is not _never]
    if not live:
        return _never
    if len(live) == 1:
        return live[0]
    return lambda ctx: _after(ctx, [n(ctx) for n in live])


def _either(a: Next, b: Next) -> Next:
    return _earliest([a, b])


def _ordered(op: Callable[[Any, Any], bool]) -> Callable[[Any, Any], bool]:
    def compare(a: Any, b: Any) -> bool:
        if a is None or b is None:
            return False
        try:
            return bool(op(a, b))
        except TypeError:
            return False  # "shoes" < 3: false, never a crash in the flow
    return compare


def _membership(negate: bool) -> Callable[[Any, Any], bool]:
    def compare(a: Any, b: Any) -> bool:
        try:
            return (a in b) != negate
        except TypeError:
            return negate
    return compare


_COMPARE: dict[type, Callable[[Any, Any], bool]] = {
    ast.Eq: operator.eq, ast.NotEq: operator.ne,
    ast.Lt: _ordered(operator.lt), ast.LtE: _ordered(operator.le),
    ast.Gt: _ordered(operator.gt), ast.GtE: _ordered(operator.ge),
    ast.In: _membership(False), ast.NotIn: _membership(True),
}
_FLIP: dict[type[ast.cmpop], type[ast.cmpop]] = {
    ast.Lt: ast.Gt, ast.LtE: ast.GtE, ast.Gt: ast.Lt, ast.GtE: ast.LtE, ast.Eq: ast.Eq,
    ast.NotEq: ast.NotEq}


def _arith(op: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    def apply(a: Any, b: Any) -> Any:
        if a is None or b is None:
            return None
        try:
            return op(a, b)
        except (TypeError, ZeroDivisionError):
            return None
    return apply


_ARITH = {ast.Add: _arith(operator.add), ast.Sub: _arith(operator.sub),
          ast.Mult: _arith(operator.mul), ast.Div: _arith(operator.truediv)}
_AGGREGATES: dict[str, Callable[..., Any]] = {"min": min, "max": max, "abs": abs}


class _Compiler:
    def __init__(self, where: str, event_fields: bool) -> None:
        self.where = where
        self.event_fields = event_fields
        self.features: set[str] = set()

    def fail(self, reason: str) -> ConfigError:
        return ConfigError(self.where, reason)

    def compile(self, node: ast.AST) -> tuple[Fn, Next]:
        method = getattr(self, "_" + type(node).__name__, None)
        if method is None:
            raise self.fail(f"{type(node).__name__.lower()} is not allowed in a rule "
                            "(use features, constants, and/or/not, comparisons, + - * /)")
        return method(node)

    def _Constant(self, node: ast.Constant) -> tuple[Fn, Next]:
        value = node.value
        if not isinstance(value, (int, float, str, bool)) and value is not None:
            raise self.fail(f"constant {value!r} is not a number, string or boolean")
        return (lambda ctx: value), _never

    def _Name(self, node: ast.Name) -> tuple[Fn, Next]:
        if node.id in CONSTANTS:
            value = CONSTANTS[node.id]
            return (lambda ctx: value), _never
        feature = FEATURES.get(node.id)
        if feature is None:
            names = list(FEATURES) + list(CONSTANTS)
            close = difflib.get_close_matches(node.id, names, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise self.fail(f"unknown name {node.id!r}{hint}")
        self.features.add(node.id)
        name = node.id
        compute = feature.compute

        def get(ctx: Context) -> Any:
            # Context.__getitem__ inlined: rules read features more than anything else
            cache = ctx.cache
            value = cache.get(name, MISSING)
            if value is MISSING:
                value = cache[name] = compute(ctx)
            return value
        if feature.kind in ("static", "population"):
            return get, _never
        return get, (lambda ctx: ctx.changes(name))

    def _Attribute(self, node: ast.Attribute) -> tuple[Fn, Next]:
        if not (isinstance(node.value, ast.Name) and node.value.id == "event"):
            raise self.fail("only event.<field> may use a dot")
        if not self.event_fields:
            raise self.fail("event.<field> is only allowed in trigger conditions")
        if node.attr not in EVENT_FIELDS:
            raise self.fail(f"event.{node.attr} is not one of {', '.join(EVENT_FIELDS)}")
        name = node.attr
        return (lambda ctx: event_field(ctx, name)), _never

    def _List(self, node: ast.List | ast.Tuple | ast.Set) -> tuple[Fn, Next]:
        values = []
        for elt in node.elts:
            if not isinstance(elt, ast.Constant):
                raise self.fail("lists may hold constants only")
            values.append(elt.value)
        frozen = frozenset(values) if all(isinstance(v, (str, int, float)) for v in values) \
            else tuple(values)
        return (lambda ctx: frozen), _never

    _Tuple = _List
    _Set = _List

    def _BoolOp(self, node: ast.BoolOp) -> tuple[Fn, Next]:
        parts = [self.compile(v) for v in node.values]
        fns = [f for f, _ in parts]
        nxt = _earliest([n for _, n in parts])
        if isinstance(node.op, ast.And):
            def test(ctx: Context) -> Any:
                value: Any = True
                for f in fns:
                    value = f(ctx)
                    if not value:
                        return value
                return value
        else:
            def test(ctx: Context) -> Any:
                value: Any = False
                for f in fns:
                    value = f(ctx)
                    if value:
                        return value
                return value
        return test, nxt

    def _UnaryOp(self, node: ast.UnaryOp) -> tuple[Fn, Next]:
        f, n = self.compile(node.operand)
        if isinstance(node.op, ast.Not):
            return (lambda ctx: not f(ctx)), n
        if isinstance(node.op, ast.USub):
            return (lambda ctx: None if (v := f(ctx)) is None else -v), n
        raise self.fail(f"operator {type(node.op).__name__} is not allowed")

    def _BinOp(self, node: ast.BinOp) -> tuple[Fn, Next]:
        op = _ARITH.get(type(node.op))
        if op is None:
            raise self.fail(f"operator {type(node.op).__name__} is not allowed (use + - * /)")
        (fa, na), (fb, nb) = self.compile(node.left), self.compile(node.right)
        return (lambda ctx: op(fa(ctx), fb(ctx))), _either(na, nb)

    def _Call(self, node: ast.Call) -> tuple[Fn, Next]:
        if not isinstance(node.func, ast.Name) or node.keywords:
            raise self.fail("only views_7d(\"category\")-style functions, min, max and abs "
                            "may be called")
        name = node.func.id
        if name in CATEGORY_FUNCTIONS:
            if len(node.args) != 1 or not isinstance(node.args[0], ast.Constant) \
                    or not isinstance(node.args[0].value, str):
                raise self.fail(f"{name}() takes one category name in quotes")
            category = node.args[0].value
            self.features.add(f"{name}({category!r})")
            return (lambda ctx: category_count(ctx, name, category)), \
                (lambda ctx: category_expiry(ctx, name, category))
        if name in _AGGREGATES:
            if not node.args:
                raise self.fail(f"{name}() needs arguments")
            agg = _AGGREGATES[name]
            parts = [self.compile(a) for a in node.args]

            def call(ctx: Context) -> Any:
                values = [f(ctx) for f, _ in parts]
                if any(v is None for v in values):
                    return None
                try:
                    return agg(*values) if len(values) > 1 else agg(values[0])
                except TypeError:
                    return None
            return call, _earliest([n for _, n in parts])
        raise self.fail(f"unknown function {name}() (functions: "
                        f"{', '.join([*CATEGORY_FUNCTIONS, *_AGGREGATES])})")

    def _Compare(self, node: ast.Compare) -> tuple[Fn, Next]:
        operands = [node.left, *node.comparators]
        compiled = [self.compile(o) for o in operands]
        tests = []
        nexts: list[Next] = []
        for i, op_node in enumerate(node.ops):
            op = _COMPARE.get(type(op_node))
            if op is None:
                raise self.fail(f"comparison {type(op_node).__name__} is not allowed")
            (fa, na), (fb, nb) = compiled[i], compiled[i + 1]
            tests.append((op, fa, fb))
            nexts.append(self._crossing(operands[i], type(op_node), operands[i + 1])
                         or _either(na, nb))
        if len(tests) == 1 and isinstance(node.comparators[0], ast.Constant):
            only, fa, _ = tests[0]
            value = node.comparators[0].value  # checked by _Constant above

            def test(ctx: Context) -> bool:
                return only(fa(ctx), value)
        elif len(tests) == 1:
            only, fa, fb = tests[0]

            def test(ctx: Context) -> bool:
                return only(fa(ctx), fb(ctx))
        else:
            def test(ctx: Context) -> bool:
                return all(op(fa(ctx), fb(ctx)) for op, fa, fb in tests)
        return test, _earliest(nexts)

    def _crossing(self, left: ast.AST, op: type[ast.cmpop], right: ast.AST) -> Next | None:
        """A clock feature against a number flips only where it crosses that number."""
        if isinstance(left, ast.Constant) and isinstance(right, ast.Name):
            left, right, op = right, left, _FLIP.get(op, op)
        if not (isinstance(left, ast.Name) and isinstance(right, ast.Constant)):
            return None
        feature = FEATURES.get(left.id)
        value = right.value
        if feature is None or feature.crossing is None or isinstance(value, bool) \
                or not isinstance(value, (int, float)):
            return None
        points: list[float]
        if left.id in INTEGER_CLOCKS:
            if op in (ast.GtE, ast.Lt):
                points = [math.ceil(value)]
            elif op in (ast.Gt, ast.LtE):
                points = [math.floor(value) + 1]
            else:
                points = [value, value + 1] if float(value).is_integer() else []
        else:
            points = [value]
        crossing = feature.crossing
        return lambda ctx: _after(ctx, [crossing(ctx, p) for p in points])


def event_field(ctx: Context, name: str) -> Any:
    ev = ctx.cache.get("event")
    if ev is None:
        return None
    if name in ("revenue",):
        return ev.revenue
    if name in ("email", "first_name", "consent"):
        t = ev.traits
        if t is None:
            return None
        return t.marketing_consent if name == "consent" else getattr(t, name)
    if not ev.products:
        return None
    return getattr(ev.products[0], "product_id" if name == "product_id" else name)


def compile_rule(text: str, where: str, *, event_fields: bool = False) -> Rule:
    """Compile `text`; a ConfigError names `where` (the key path) and the reason."""
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as exc:
        raise ConfigError(where, f"not a valid rule: {exc.msg} at column {exc.offset}") \
            from None
    except (ValueError, RecursionError, MemoryError):
        raise ConfigError(where, "not a valid rule (null bytes or nesting too deep)") from None
    compiler = _Compiler(where, event_fields)
    try:
        fn, nxt = compiler.compile(tree.body)
    except RecursionError:
        raise ConfigError(where, "the rule nests too deeply") from None
    return Rule(text, lambda ctx: bool(fn(ctx)), nxt, frozenset(compiler.features))
