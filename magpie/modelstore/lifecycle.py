"""A model version's life: trained from stored behaviour, registered, promoted, published.

`train_candidate` is what retraining runs: read the catalog and events back from
PostgreSQL, train retrieval and ranker, write a validated bundle and register it
as a candidate. `promote_and_publish` puts a version into service: Triton loads
it first (validated, no request dropped) and the registry change commits only if
that worked; retrieval and ranking follow the registry within seconds.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import psycopg2

from magpie.datasets.schema import Dataset
from magpie.modelstore import registry
from magpie.runtime.db import Connection
from magpie.runtime.settings import Settings

__all__ = ["bundle_path", "connection", "promote_and_publish", "train_candidate"]

logger = logging.getLogger(__name__)


@contextlib.contextmanager
def connection(settings: Settings) -> Iterator[Connection]:
    """One transaction on the settings' database."""
    with contextlib.closing(psycopg2.connect(settings.database_url)) as conn, conn:
        yield conn


def bundle_path(artifact_uri: str) -> Path:
    """The bundle directory of a registry ``artifact_uri`` (a path or a file:// URI)."""
    parsed = urlparse(artifact_uri)
    return Path(parsed.path if parsed.scheme == "file" else artifact_uri)


def _triton_live(addr: str) -> bool:
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(addr)
    try:
        return bool(client.is_server_live(client_timeout=1.0))
    except Exception:  # noqa: BLE001 - any failure means no server to talk to
        return False
    finally:
        client.close()


def _publish(settings: Settings, row: registry.ModelVersion) -> None:
    from magpie.modelstore.publish import publish

    addr = settings.triton_addr if _triton_live(settings.triton_addr) else None
    if addr is None:
        logger.warning("no Triton at %s: version lands on disk only", settings.triton_addr)
    publish(
        bundle_path(row.artifact_uri),
        row.version,
        Path(settings.model_repository),
        settings.triton_model,
        triton_addr=addr,
    )


def promote_and_publish(
    conn: Connection, settings: Settings, name: str, version: int | None
) -> registry.ModelVersion:
    """Promote ``version`` (``None``: roll back) and publish it, in ``conn``'s transaction."""
    row = (
        registry.rollback(conn, name) if version is None else registry.promote(conn, name, version)
    )
    _publish(settings, row)
    return row


def train_candidate(
    settings: Settings,
    dataset: Dataset,
    config: Any,
    metrics: Mapping[str, Any] | None = None,
) -> registry.ModelVersion:
    """Trains on `dataset` with `config` (a PipelineConfig), writes and registers a candidate."""
    from magpie.learning.train import train_pipeline
    from magpie.modelstore.writer import write_bundle

    started = time.monotonic()
    artifacts = train_pipeline(dataset, config)
    with connection(settings) as conn:
        version = registry.next_version(conn, settings.model_name)
    recorded = {
        "events": len(dataset.interactions),
        "items": len(dataset.items),
        "train_seconds": round(time.monotonic() - started, 1),
        **(metrics or {}),
    }
    path = write_bundle(artifacts, dataset, Path(settings.artifact_dir), version, recorded)
    with connection(settings) as conn:
        row = registry.register_candidate(conn, settings.model_name, version, recorded, str(path))
    logger.info("registered candidate %s version %d", settings.model_name, version)
    return row
