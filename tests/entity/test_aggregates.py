"""The one aggregate definition (quanta/_entity/aggregates.py): ``Aggregate.of`` (queries)
and the add/remove accumulator (live queries) agree with each other and with exact rational
arithmetic, whatever the values and their order."""

from __future__ import annotations

import math
from fractions import Fraction

from hypothesis import given, settings
from hypothesis import strategies as st

from quanta._entity import Aggregate

FLOATS = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([0.1, 0.2, 0.3, -0.0, 5e-324, 1e308, -1e308, 1.7976931348623157e308]),
)


def _exact(values: list[float], n: int) -> float:
    total = sum(map(Fraction, values)) / n
    try:
        return float(total)
    except OverflowError:
        return math.inf if total > 0 else -math.inf


def _same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b


@settings(max_examples=400, deadline=None)
@given(st.lists(FLOATS, min_size=1, max_size=12))
def test_float_sum_and_mean_are_exact_then_rounded_once(values: list[float]) -> None:
    for kind, n in (("sum", 1), ("avg", len(values))):
        want = _exact(values, n)
        assert _same(Aggregate.of(kind, True, values), want), kind
        acc = Aggregate(kind, True)
        extra = [v * 3 for v in values]  # added, then removed again: the answer is unchanged
        for v in values + extra:
            acc.add(v, 1)
        for v in extra:
            acc.add(v, -1)
        assert _same(acc.value(), want), kind


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.floats(), st.none()), max_size=10))
def test_queries_and_live_agree_with_infinities_and_nan(values: list[float | None]) -> None:
    for kind in ("min", "max", "sum", "avg"):
        acc = Aggregate(kind, True)
        for v in values:
            if v is not None:
                acc.add(v, 1)
        got = Aggregate.of(kind, True, values)
        live = acc.value()
        assert (got is None and live is None) or (type(got) is type(live) and _same(got, live)), (kind, got, live)


def test_min_and_max_do_not_depend_on_the_order_of_the_values() -> None:
    for values in ([math.nan, -1.5, 2.0], [2.0, -1.5, math.nan], [-1.5, math.nan, 2.0]):
        assert Aggregate.of("min", True, values) == -1.5
        assert math.isnan(Aggregate.of("max", True, values))


def test_empty_and_int_cases() -> None:
    assert Aggregate.of("sum", True, []) == 0
    assert Aggregate.of("avg", True, [None]) is None
    assert Aggregate.of("min", False, []) is None
    assert Aggregate.of("sum", False, [True, True, 3]) == 5
    assert Aggregate.of("avg", False, [1, 2]) == 1.5
    assert Aggregate.of("sum", True, [1e308, 1e308]) == math.inf
