"""A model version's life: trained from stored behaviour, registered, promoted, published.

`train_candidate` trains retrieval and ranker on a data set, writes a validated bundle
and registers it as a candidate (what `magpie train` runs). `roll_out` puts a version
into service with no failed or degraded call: staged, loaded by Triton and by every
serving replica beside the champion, then switched in one alias change; `roll_back`
swaps the champion with the previous one, which every replica keeps loaded.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Collection, Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import psycopg2

from magpie.datasets.schema import Dataset
from magpie.modelstore import registry
from magpie.modelstore.replicas import Readiness, readiness
from magpie.runtime.db import Connection
from magpie.runtime.errors import Unavailable
from magpie.runtime.settings import Settings

__all__ = [
    "bundle_path",
    "connection",
    "publish_version",
    "roll_back",
    "roll_out",
    "train_candidate",
    "wait_replicas_ready",
]

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


def publish_version(settings: Settings, row: registry.ModelVersion, keep: Collection[int]) -> None:
    """Lands ``row``'s ranker in the Triton repository beside the versions in ``keep`` and,
    when Triton is up, loads it there (the others keep answering)."""
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
        keep=keep,
    )


def wait_replicas_ready(settings: Settings, version: int, timeout: float) -> Readiness:
    """Until every live retrieval and ranking replica holds ``version`` (or ``timeout``);
    the last readiness seen."""
    give_up = time.monotonic() + timeout
    fresh = max(3 * settings.model_poll_seconds, 5.0)
    while True:
        with connection(settings) as conn:
            seen = readiness(conn, settings.model_name, version, fresh_seconds=fresh)
        if seen.complete or time.monotonic() > give_up:
            return seen
        time.sleep(min(settings.model_poll_seconds, 0.5))


def roll_out(
    settings: Settings,
    version: int,
    trigger: str,
    *,
    reason: str = "",
    run_id: str | None = None,
    timeout: float = 120.0,
) -> registry.ModelVersion:
    """Serves ``version`` without a failed or degraded call: stage it (every retrieval and
    ranking replica loads it beside the champion), publish it to Triton beside the versions
    in use, wait until every live replica holds it, then switch the champion alias in one
    transaction (logged with ``trigger``). Raises ``Unavailable`` when the replicas are not
    ready within ``timeout``; the champion is unchanged then and ``staged`` cleared.
    """
    name = settings.model_name
    with connection(settings) as conn:
        row = registry.get_version(conn, name, version)
        current = registry.aliases(conn, name)
        if current.get("champion") == version:
            return row
        registry.set_staged(conn, name, version)
    try:
        keep = {v for alias, v in current.items() if alias != "staged"}
        publish_version(settings, row, keep)
        ready = wait_replicas_ready(settings, version, timeout)
        if not ready.complete:
            raise Unavailable(
                f"version {version} not loaded by {', '.join(ready.waiting)} after {timeout:.0f}s"
            )
        with connection(settings) as conn:
            row = registry.promote(conn, name, version, trigger, reason=reason, run_id=run_id)
    except BaseException:
        with connection(settings) as conn:
            if registry.aliases(conn, name).get("staged") == version:
                registry.set_staged(conn, name, None)
        raise
    logger.info("%s version %d promoted (%s)", name, version, trigger)
    return row


def roll_back(
    settings: Settings, trigger: str = "manual", reason: str = ""
) -> registry.ModelVersion:
    """Swaps champion and previous (both loaded everywhere): one alias change."""
    with connection(settings) as conn:
        row = registry.rollback(conn, settings.model_name, trigger, reason)
    logger.info("%s rolled back to version %d (%s)", settings.model_name, row.version, trigger)
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
