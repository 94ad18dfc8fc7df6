"""Limits and defaults of the profile service."""

from magpie.runtime.validation import MAX_ID_LENGTH

MAX_BATCH = 1000
MAX_BATCH_GET = 500
DEFAULT_HISTORY = 50
MAX_HISTORY = 200
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 500
MAX_PREFIX_LENGTH = MAX_ID_LENGTH
"""Longest `user_id_prefix` of ListProfiles: a longer one matches no id."""
MAX_PURCHASED = 200
"""Most purchased products listed in a profile (the most recent ones)."""
MAX_DISLIKED = 1000
"""Most disliked products listed in a profile (the most recent ones)."""
MAX_TEXT_LENGTH = 200
"""Longest region and segment."""
MAX_SEGMENTS = 100

MAX_REQUEST_BYTES = 4 * 1024 * 1024
"""Largest request: an UpsertProfiles page of 1,000 profiles is well under 1 MiB."""
