"""Crash benchmark of feedback ingestion: a high-rate event stream while the feedback
service is killed with SIGKILL again and again; afterwards every acknowledged event must
be stored, and no event twice.

    python -m tools.bench.feedback_crash [--events 200000] [--batch-size 500] [--kills 5]

The real feedback service runs as a separate process over a throwaway database (migrated
to head, dropped afterwards). The producer (`tools.bench._feedback_stream`, the one the
crash test uses) streams numbered batches over StreamEvents; after a random number of
acknowledgements the service is SIGKILLed, restarted, and the producer sends again every
batch not acknowledged, until all are. ``lost`` counts acknowledged events missing from
PostgreSQL, ``duplicates`` event ids stored more than once: both must be 0.
``resent_duplicates`` are events the service stored but was killed before acknowledging:
sent again, it answered "duplicate" for them. Writes bench-results/feedback-crash.json.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg2

from magpie.platform.local import free_port, wait_serving
from magpie.runtime import schema
from tools.bench._feedback_stream import PRODUCT_ID, ResumingStream, stored_counts
from tools.bench._platform import ADMIN_URL
from tools.bench._report import percentiles, write_report

REPO = Path(__file__).resolve().parents[2]


@contextlib.contextmanager
def _feedback(database_url: str, log: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """``python -m services.feedback`` on a free port until the block ends (killed then
    if it still runs); its address and process."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAGPIE_")}
    env.update(
        MAGPIE_DATABASE_URL=database_url,
        MAGPIE_PORT=str(port),
        MAGPIE_METRICS_PORT="0",
        MAGPIE_REDIS_URL="",
        MAGPIE_LOG_JSON="false",
        MAGPIE_RETRAIN_EVENT_THRESHOLD="0",  # no broker here
    )
    with log.open("ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "services.feedback"],
            env=env,
            cwd=REPO,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        address = f"127.0.0.1:{port}"
        if not wait_serving(address, timeout=30):
            raise RuntimeError(f"feedback never became SERVING; see {log}")
        yield address, process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()


def _add_product(database_url: str) -> None:
    conn = psycopg2.connect(database_url)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(
                "INSERT INTO products (product_id, title, category_path) VALUES (%s, %s, %s)",
                (PRODUCT_ID, "the crash bench's product", "Bench"),
            )
    finally:
        conn.close()


def run(args: argparse.Namespace) -> dict[str, object]:
    batches = -(-args.events // args.batch_size)
    stream = ResumingStream(batches, args.batch_size)
    rng = random.Random(args.seed)
    # Each kill lands somewhere in its share of the batches (never on the first ack).
    share = batches // (args.kills + 1)
    kill_after = [rng.randint(max(1, share // 2), max(1, share)) for _ in range(args.kills)]
    restarts: list[float] = []
    streaming = 0.0
    kills = 0
    with schema.throwaway_database(ADMIN_URL, "magpie_bench") as database_url:
        _add_product(database_url)
        while not stream.done:
            started = time.perf_counter()
            with _feedback(database_url, args.log) as (address, process):
                restarts.append(time.perf_counter() - started)
                target = kill_after[kills] if kills < args.kills else None

                def kill(acks: int, target: int | None = target) -> None:
                    if acks == target:
                        process.kill()

                sending = time.perf_counter()
                error = stream.send(address, on_ack=kill)
                streaming += time.perf_counter() - sending
                if error is not None:
                    if process.wait() != -9:
                        raise RuntimeError(f"the stream broke without a kill: {error}")
                    kills += 1
        counts = stored_counts(database_url)
    acked_ids = [e for s in set(stream.acked) for e in stream.event_ids(s)]
    sent = {e for s in range(batches) for e in stream.event_ids(s)}
    return {
        "acked_events": len(acked_ids),
        "stored_events": sum(counts.values()),
        "duplicates": sum(1 for n in counts.values() if n > 1),
        "lost": sum(1 for e in acked_ids if e not in counts),
        "unknown_stored": len(set(counts) - sent),
        "resent_duplicates": stream.duplicates,
        "kills": kills,
        "events_per_s": round(len(acked_ids) / streaming),
        "restart_seconds_p50": (
            round(percentiles(restarts[1:], (50,))["p50"], 2) if kills else None
        ),
        "events": batches * args.batch_size,
        "batch_size": args.batch_size,
        "kill_after_acks": kill_after,
        "streaming_seconds": round(streaming, 2),
        "protocol": (
            "The real feedback service in its own process; one producer streams numbered "
            "batches over StreamEvents; after the given number of acks in a connection the "
            "service is SIGKILLed and restarted, and the producer sends again every batch "
            "not acknowledged. events_per_s: acknowledged events over the seconds spent "
            "streaming (restarts excluded)."
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m tools.bench.feedback_crash",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--kills", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--log", type=Path, default=Path("/tmp/magpie-bench-feedback-crash.log"))
    result = run(parser.parse_args())
    for key in ("acked_events", "stored_events", "duplicates", "lost", "resent_duplicates"):
        print(f"{key:<18} {result[key]}")
    print(f"{'kills':<18} {result['kills']}")
    print(f"{'events/s':<18} {result['events_per_s']}")
    print(f"wrote {write_report('feedback-crash', result)}")


if __name__ == "__main__":
    main()
