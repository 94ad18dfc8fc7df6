"""Limits and defaults of the retrieval service."""

from magpie.v1 import common_pb2

DEFAULT_LIMIT = 500
MAX_LIMIT = 2000
DEFAULT_SIMILAR = 20
MAX_SIMILAR = 500
MAX_RECENT = 200
"""Most recent product ids a request may carry (the user tower's history length)."""

ANN = int(common_pb2.CANDIDATE_SOURCE_ANN)
COVISITATION = int(common_pb2.CANDIDATE_SOURCE_COVISITATION)
POPULAR = int(common_pb2.CANDIDATE_SOURCE_POPULAR)
CONTENT = int(common_pb2.CANDIDATE_SOURCE_CONTENT)

SOURCE_ORDER = (ANN, COVISITATION, CONTENT, POPULAR)
"""Priority when sources return the same product: the first keeps it."""
NEIGHBOUR_SOURCES = (ANN, COVISITATION, CONTENT)
"""Sources of SimilarProducts (in priority order); a caller may ask for some of them."""
DEFAULT_QUOTAS = {ANN: 250, COVISITATION: 100, CONTENT: 50, POPULAR: 100}
"""Most candidates per source for a user with history."""
COLD_QUOTAS = {ANN: 0, COVISITATION: 0, CONTENT: 150, POPULAR: 350}
"""Most candidates per source for a user without history (cold start)."""
OVERFETCH = 1.5
"""Each source proposes this many times its quota (plus the quotas of the sources before it,
which may claim the same products), so exclusions rarely leave it short."""

ANCHORS = 10
"""Newest recent products that anchor co-visitation."""
CONTENT_ANCHORS = 3
"""Newest recent products (or top popular products for a cold user) that anchor content."""
TEXT_NEIGHBOURS = 500
"""Nearest texts kept per anchor (the content source asks for up to about 430)."""
TEXT_LISTS_KEPT = 20_000
"""Anchors whose text lists a model version keeps (4 KB each, 80 MB at most)."""
ANCHOR_DECAY = 0.9
"""Weight of the i-th newest anchor is ANCHOR_DECAY**i."""
POPULAR_CATEGORIES = 3
"""Top-level categories of the user's recent products whose popular lists are mixed in."""

PROFILE_HISTORY = 50
"""Recent interactions read from the profile when the request carries none."""
PROFILE_TIMEOUT_SECONDS = 0.1
"""Longest wait for the profile service before answering without personal sources."""

POPULARITY_TTL_SECONDS = 5.0
"""Age after which the popularity snapshot is refreshed (in the background)."""
POPULAR_POOL = 1000
"""Products kept per popularity list (overall and per top-level category)."""
POPULARITY_HALF_LIFE_DAYS = 7.0
"""Half-life of product_popularity.score (migration 0002)."""

PRODUCTS_REFRESH_SECONDS = 2.0
"""Age after which product availability and attributes are re-read (incrementally)."""
FREEZE_AFTER_PRODUCT_ROWS = 1000
"""A product read this large (the first, a bulk import) is frozen out of the garbage
collector's scans (magpie.runtime.heap)."""
FAISS_THREADS = 1
"""Threads per FAISS search: one query is tiny; requests in parallel use the cores."""

MAX_REQUEST_BYTES = 1024 * 1024
"""Largest request: 2,000 excluded and 200 recent ids of up to 128 characters."""
