"""Limits, defaults and per-hop time budgets of the ranking service."""

DEFAULT_K = 10
MAX_K = 200
MAX_RANK_IDS = 2000
CANDIDATES = 500
"""How many candidates Recommend asks retrieval for and the ranker scores."""
HISTORY_LIMIT = 100
"""Most recent interactions read from the profile and fed to the ranker."""

PROFILE_TIMEOUT_SECONDS = 0.05
RETRIEVAL_TIMEOUT_SECONDS = 0.1
CATALOG_TIMEOUT_SECONDS = 0.08
"""Each hop's budget; the incoming deadline shortens them further."""

BREAKER_FAILURES = 5
BREAKER_RESET_SECONDS = 2.0

NEW_PRODUCT_DAYS = 30
"""A product this young counts as new for the "new in a category you like" reason."""
RULES_POOL = 60
RULES_POOL_PER_ITEM = 4
"""Product data is fetched for the best max(RULES_POOL, RULES_POOL_PER_ITEM * k) scored
candidates first (business rules need it only there), more only if too few pass."""
PRODUCT_CACHE_SECONDS = 300.0
"""How long Recommend reuses a product's facts fetched from the catalog (see
:mod:`services.ranking.product_cache`), as long as the catalog's own cache keeps them;
0 turns the cache off. A shorter life refetches most Recommends' slices: at 30 s the
catalog hop was still made by most calls under load."""
PRODUCT_CACHE_SIZE = 100_000
"""Most products kept (about 40 MB)."""
FALLBACK_POPULAR = 500
"""Size of the last-known popular list kept for when retrieval is down."""

MAX_REQUEST_BYTES = 1024 * 1024
"""Largest request: a Rank of 2,000 product ids of up to 128 characters is 256 KiB."""
