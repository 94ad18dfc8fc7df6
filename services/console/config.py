"""Names, limits and deadlines of the console."""

COOKIE = "magpie_console"
"""Session cookie: the signed-in person's token (HttpOnly, SameSite=Strict)."""

CALL_SECONDS = 5.0
"""Deadline of every gRPC call a page makes."""

USERS_PAGE = 50
"""Users listed per page of the user search."""
DEFAULT_K = 10
MAX_K = 200
"""Recommendations shown by default, and the most a page may ask for (Recommend's limit)."""
DEFAULT_CURRENCY = "EUR"
"""Currency of the price filter when the form names none."""
MODEL_VERSIONS = 50
"""Registry versions read to find the champion and the previous version."""

MAX_FORM_BYTES = 16 * 1024
"""Largest request body (a sign-in or a feedback form); larger ones get 413."""
MAX_TEXT = 500
"""Longest text accepted in a form field (a comment's limit in the feedback API)."""
