"""Limits and defaults of the profile service."""

MAX_BATCH = 1000
MAX_BATCH_GET = 500
DEFAULT_HISTORY = 50
MAX_HISTORY = 200
MAX_PURCHASED = 200
"""Most purchased products listed in a profile (the most recent ones)."""
