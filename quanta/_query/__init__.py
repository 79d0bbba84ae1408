"""The query layer: typed expressions (``expr.py``), exact key sets (``keyset.py``) and the
planner (``planner.py``). Pure and synchronous; the collection runs the plans."""

from .expr import (
    Expr,
    Field,
    Order,
    and_,
    as_order,
    asc,
    between,
    contains,
    desc,
    in_,
    not_,
    or_,
)
from .planner import MAX_RANGES, Access, Plan, check, order_records, plan, sort_key

__all__ = [
    "MAX_RANGES",
    "Access",
    "Expr",
    "Field",
    "Order",
    "Plan",
    "and_",
    "as_order",
    "asc",
    "between",
    "check",
    "contains",
    "desc",
    "in_",
    "not_",
    "or_",
    "order_records",
    "plan",
    "sort_key",
]
