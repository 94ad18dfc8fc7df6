"""Constants of the retraining worker."""

SWEEP_SECONDS = 15.0
"""How often beat looks for runs whose next task or worker was lost."""
RETRY_BACKOFF_SECONDS = 5.0
"""First delay of a stage retried after a transient error; it doubles up to the maximum."""
RETRY_BACKOFF_MAX_SECONDS = 300.0
MAX_TRANSIENT_RETRIES = 20
"""Retries of one task on transient errors (a database or Triton outage) before giving up;
the sweeper picks the run up again afterwards."""
BEAT_LOCK = 0x6D61_6770_6965_02
"""PostgreSQL advisory lock held by the one active beat process for its whole life."""
