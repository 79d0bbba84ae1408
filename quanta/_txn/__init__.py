"""Transactions: snapshot reads, buffered writes, optimistic conflict checks on commit."""

from .conflicts import MAX_TRACKED_KEYS, ConflictTracker, TxState
from .transaction import (
    MAX_TX_KEYS,
    MAX_TX_RANGES,
    Transaction,
    TransactionKeyValue,
    Transactions,
    check_retries,
    run_transaction,
)

__all__ = [
    "MAX_TRACKED_KEYS",
    "MAX_TX_KEYS",
    "MAX_TX_RANGES",
    "ConflictTracker",
    "Transaction",
    "TransactionKeyValue",
    "Transactions",
    "TxState",
    "check_retries",
    "run_transaction",
]
