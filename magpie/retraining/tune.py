"""Hyper-parameter search (``magpie tune``) and the parameters it proved better."""

from __future__ import annotations

from typing import Any

from magpie.runtime.db import Connection

__all__ = ["proven_parameters"]


def proven_parameters(conn: Connection, model_name: str) -> dict[str, Any]:
    """The newest tuned pipeline settings that beat the defaults on validation ({} if none)."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT params FROM tuned_parameters WHERE model_name = %s AND value > baseline"
            " ORDER BY created_at DESC, id DESC LIMIT 1",
            (model_name,),
        )
        row = cur.fetchone()
    return dict(row[0]) if row else {}
