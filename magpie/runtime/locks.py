"""PostgreSQL advisory lock keys shared by more than one service.

Taken with `pg_advisory_xact_lock(key)` so they end with the transaction.
"""

__all__ = ["EVENT_FOLD_LOCK"]

EVENT_FOLD_LOCK = 0x6D61_6770_6965_01
"""Held while events are folded into derived features and while a user's events are deleted,
so that a deletion and the consumer never interleave."""
