"""Access control (docs/access-control.md): principals, policies of rules and masks
(``policy.py``: pure, compiled per principal into query expressions) and sessions
(``session.py``: ``db.session(principal)`` and its checked collections, queries and ``kv``).

It sits above the entity and live-query layers and uses only their public query API: a
rule is a query expression ANDed into each query a session runs, so the planner, the executor
and the live-query layer need nothing of their own for it. Writes are checked on what a
transaction would commit (``Transaction.buffered()``), before it commits.
"""

from .policy import MASKED, Grants, KvRule, Mask, Policy, Principal, Rule, allow, allow_kv, mask
from .session import Session, SessionBatch, SessionCollection, SessionKeyValue, SessionQuery, TrustedDatabase

__all__ = [
    "MASKED",
    "Grants",
    "KvRule",
    "Mask",
    "Policy",
    "Principal",
    "Rule",
    "Session",
    "SessionBatch",
    "SessionCollection",
    "SessionKeyValue",
    "SessionQuery",
    "TrustedDatabase",
    "allow",
    "allow_kv",
    "mask",
]
