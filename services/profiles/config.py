"""Limits and defaults of the profile service."""

MAX_BATCH = 1000
MAX_BATCH_GET = 500
DEFAULT_HISTORY = 50
MAX_HISTORY = 200
MAX_PURCHASED = 200
"""Most purchased products listed in a profile (the most recent ones)."""
MAX_DISLIKED = 1000
"""Most disliked products listed in a profile (the most recent ones)."""
MAX_TEXT_LENGTH = 200
"""Longest region and segment."""
MAX_SEGMENTS = 100

MAX_REQUEST_BYTES = 4 * 1024 * 1024
"""Largest request: an UpsertProfiles page of 1,000 profiles is well under 1 MiB."""
