"""Limits and defaults of the feedback service."""

MAX_BATCH = 5000
"""Most events in one RecordEvents request or one StreamEvents message."""
MAX_FUTURE_SECONDS = 300.0
"""Events dated further ahead of the server's clock than this are rejected."""
MAX_RATING = 5.0
MAX_COMMENT_LENGTH = 500
"""Longest comment, in characters (code points)."""
STREAM_PIPELINE_DEPTH = 3
"""Batches of one stream being written at once; acknowledgements still follow commit order."""
PRODUCT_CACHE_SECONDS = 60.0
"""How long a product id seen in the catalog is trusted without asking PostgreSQL again."""
PRODUCT_CACHE_MAX = 1_000_000

CONSUMER_NAME = "feedback-features"
CONSUMER_BATCH = 5000
"""Events folded into the derived features per consumer transaction."""
CONSUMER_IDLE_SECONDS = 0.2
"""Pause of the consumer after it found nothing new."""
RETRAIN_CHECK_SECONDS = 5.0
"""How often, while events arrive, the new-event count is checked against the retraining
threshold (MAGPIE_RETRAIN_EVENT_THRESHOLD)."""

MAX_REQUEST_BYTES = 16 * 1024 * 1024
"""Largest request: 5,000 events with every id at its 128-character limit are about 4 MiB;
comments of 500 four-byte characters (emoji) add 10 MB."""

DEFAULT_MODEL_LISTING = 50
"""Versions and promotions ListModelVersions answers when the request sets no limit."""
MAX_MODEL_LISTING = 200
"""Most versions and promotions one ListModelVersions answers (each)."""
MAX_METRIC_VERSIONS = 50
"""Most model versions one GetOnlineMetrics request names."""
MAX_MODEL_VERSION_LENGTH = 64
"""Longest model version a GetOnlineMetrics request may name."""
ONLINE_METRICS_DAYS = 30
"""How far back GetOnlineMetrics counts when the request sets no `since`."""
