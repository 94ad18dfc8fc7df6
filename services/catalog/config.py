"""Limits and defaults of the catalog service."""

MAX_UPSERT_BATCH = 1000
MAX_GET_BATCH = 2000
MAX_STATUS_BATCH = 1000
DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000
DEFAULT_ACTIVITY_DAYS = 30
MAX_ACTIVITY_DAYS = 90

MAX_TITLE_LENGTH = 500
MAX_DESCRIPTION_LENGTH = 20_000
MAX_CATEGORY_LEVELS = 10
MAX_TEXT_LENGTH = 200
"""Longest tag, brand or attribute key. Category levels, prices and filters are limited by
magpie.runtime.products and magpie.runtime.filters, alike in every service."""
MAX_TAGS = 100
MAX_ATTRIBUTES = 100
MAX_ATTRIBUTE_VALUE_LENGTH = 2000

STATS_CACHE_SECONDS = 30
"""Lifetime of cached behaviour statistics (bounds staleness the consumer's invalidation misses)."""
POPULARITY_HALF_LIFE_DAYS = 7.0

MAX_REQUEST_BYTES = 32 * 1024 * 1024
"""Largest request: an UpsertProducts batch of 1,000 products with long descriptions
(20,000 characters each) is about 20 MiB; larger catalogs are sent in more batches."""
