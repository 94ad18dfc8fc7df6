"""Exponential decay with a half-life, in SQL, shared by the services that decay scores.

``0.5 ^ (age / half_life)`` underflows a double (an error in PostgreSQL, not a zero) once
the age passes about 1,075 half-lives, which old data (MovieLens is from 1998) reaches
with a 7-day half-life; the exponent is capped where the factor is zero in practice.
"""

from __future__ import annotations

__all__ = ["MAX_HALF_LIVES", "decay_sql"]

MAX_HALF_LIVES = 1000.0
"""0.5 ** 1000 is about 1e-301: every older score weighs the same, next to nothing."""


def decay_sql(age_sql: str, half_life_seconds: str | float) -> str:
    """SQL for 0.5 ** (age / half-life); ``age_sql`` is an interval expression and
    ``half_life_seconds`` a number or a query parameter placeholder."""
    return (
        f"power(0.5, least(extract(epoch FROM {age_sql}) / {half_life_seconds}, {MAX_HALF_LIVES}))"
    )
