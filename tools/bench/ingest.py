"""Ingestion benchmark: events/s through FeedbackService.StreamEvents into PostgreSQL.

Creates a throwaway database (migrated to head, dropped afterwards), starts the
real feedback service as a separate process (its event consumer included),
streams `--events` events in batches from this process, and measures from the
first send to the last acknowledgement. Then checks that every acknowledged
event is in PostgreSQL (`lost` must be 0) and, in the same run, times a raw
`COPY` of the same rows into an identical empty events table.

    python -m tools.bench.ingest --events 500000
"""

from __future__ import annotations

import argparse
import io
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import grpc
import psycopg2

from magpie.platform.local import free_port, wait_serving
from magpie.runtime import schema
from magpie.v1 import feedback_pb2 as pb
from tools.bench._report import write_report

REPO = Path(__file__).resolve().parents[2]

N_PRODUCTS = 10_000
N_USERS = 50_000
T0 = 1_735_689_600  # 2025-01-01 UTC
TYPES = (1, 1, 1, 1, 1, 1, 2, 2, 3, 4, 5)


def _rows(n: int) -> list[tuple[str, str, str, int, int, float, int]]:
    """(event_id, user, product, type, occurred_at seconds, rating, position) of each event."""
    rng = random.Random(7)
    rows = []
    for i in range(n):
        kind = rng.choice(TYPES)
        rows.append(
            (
                f"bench-{i}",
                f"u{rng.randrange(N_USERS)}",
                f"p{rng.randrange(N_PRODUCTS)}",
                kind,
                T0 + i // 100,
                float(rng.randint(1, 5)) if kind == 5 else 0.0,
                rng.randint(1, 20),
            )
        )
    return rows


def _requests(rows: list[tuple[str, str, str, int, int, float, int]], batch: int) -> list[bytes]:
    requests = []
    for s, start in enumerate(range(0, len(rows), batch)):
        request = pb.StreamEventsRequest(sequence=s)
        for event_id, user, product, kind, at, rating, position in rows[start : start + batch]:
            e = request.events.add(
                event_id=event_id,
                user_id=user,
                product_id=product,
                event_type=kind,  # type: ignore[arg-type]
                rating=rating,
                position=position,
                session_id=f"s-{user}",
                device=2,  # type: ignore[arg-type]
            )
            e.occurred_at.seconds = at
        requests.append(request.SerializeToString())
    return requests


def _stream(address: str, requests: list[bytes]) -> tuple[float, int]:
    """Seconds from first send to last ack, and events acknowledged as stored."""
    with grpc.insecure_channel(
        address, options=[("grpc.max_receive_message_length", 64 * 1024 * 1024)]
    ) as channel:
        call = channel.stream_stream(
            "/magpie.v1.FeedbackService/StreamEvents",
            request_serializer=lambda raw: raw,
            response_deserializer=pb.StreamEventsResponse.FromString,
        )
        started = time.perf_counter()
        acked = sum(ack.result.accepted for ack in call(iter(requests), timeout=600))
        return time.perf_counter() - started, acked


def _copy(url: str, rows: list[tuple[str, str, str, int, int, float, int]]) -> float:
    """Seconds to COPY the same rows into an empty copy of `events` and commit."""
    buffer = io.StringIO()
    for event_id, user, product, kind, at, rating, position in rows:
        occurred = time.strftime("%Y-%m-%d %H:%M:%S+00", time.gmtime(at))
        buffer.write(
            f"{event_id}\t{user}\t{product}\t{kind}\t{occurred}\t{rating}\t{position}\ts-{user}\t2\n"
        )
    data = buffer.getvalue().encode()
    conn = psycopg2.connect(url)
    try:
        with conn.cursor() as cur:
            cur.execute("CREATE TABLE events_copy (LIKE events INCLUDING ALL)")
        conn.commit()
        started = time.perf_counter()
        with conn.cursor() as cur:
            cur.copy_expert(
                "COPY events_copy (event_id, user_id, product_id, event_type, occurred_at,"
                " rating, position, session_id, device) FROM STDIN",
                io.BytesIO(data),
            )
        conn.commit()
        return time.perf_counter() - started
    finally:
        conn.close()


def _stored_ids(url: str) -> set[str]:
    conn = psycopg2.connect(url)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT event_id FROM events")
            return {row[0] for row in cur.fetchall()}
    finally:
        conn.close()


def _seed_products(url: str) -> None:
    conn = psycopg2.connect(url)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(
                "INSERT INTO products (product_id, title, category_path)"
                " SELECT 'p' || i, 'product ' || i, 'Dept' || (i %% 12) || ' > Sub' || (i %% 40)"
                " FROM generate_series(0, %s) AS i",
                (N_PRODUCTS - 1,),
            )
    finally:
        conn.close()


def run(events: int, batch: int, admin_url: str, log: Path) -> dict[str, object]:
    with schema.throwaway_database(admin_url, "magpie_bench") as url:
        _seed_products(url)
        rows = _rows(events)
        requests = _requests(rows, batch)
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("MAGPIE_")}
        env.update(
            MAGPIE_DATABASE_URL=url,
            MAGPIE_PORT=str(port),
            MAGPIE_REDIS_URL="",
            MAGPIE_LOG_JSON="false",
        )
        with log.open("wb") as out:
            service = subprocess.Popen(
                [sys.executable, "-m", "services.feedback"],
                env=env,
                cwd=REPO,
                stdout=out,
                stderr=out,
            )
        try:
            if not wait_serving(f"127.0.0.1:{port}", timeout=30):
                raise RuntimeError(f"feedback never became SERVING; see {log}")
            seconds, acked = _stream(f"127.0.0.1:{port}", requests)
        finally:
            service.terminate()
            service.wait(timeout=30)
        stored = _stored_ids(url)
        lost = sum(1 for row in rows if row[0] not in stored)
        copy_seconds = _copy(url, rows)
    events_per_s = acked / seconds
    copy_per_s = events / copy_seconds
    return {
        "events_per_s": round(events_per_s),
        "copy_events_per_s": round(copy_per_s),
        "ratio_to_copy": round(events_per_s / copy_per_s, 3),
        "events": events,
        "acked": acked,
        "lost": lost,
        "batch_size": batch,
        "seconds": round(seconds, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=500_000)
    parser.add_argument("--batch-size", type=int, default=5_000)
    parser.add_argument(
        "--admin-url",
        default=os.environ.get(
            "TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
        ),
    )
    parser.add_argument("--log", type=Path, default=Path("/tmp/magpie-bench-feedback.log"))
    args = parser.parse_args()
    results = run(args.events, args.batch_size, args.admin_url, args.log)
    path = write_report("ingest", results)
    print(f"{'metric':<20} value")
    for key, value in results.items():
        print(f"{key:<20} {value}")
    print(f"written to {path}")


if __name__ == "__main__":
    main()
