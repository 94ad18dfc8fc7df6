"""What one gRPC hop costs in CPU: the floor under a Recommend's four hops.

    python -m tools.bench.hop_cost [--calls 3000] [--rounds 3]

A trivial unary call (GetProfile answered with an empty profile, no storage) between two
processes on loopback, through each stack in turn:

- ``bare``: grpc.aio client and server, no interceptor;
- ``magpie``: the server `magpie.runtime.server.start_server` builds (Magpie's interceptor:
  deadline, admission, validation, RED metrics) and a client from
  `magpie.runtime.clients.open_channel` (deadline propagation);
- ``auth``: the same with a tokens file and a token presented;
- ``tracing``: the same with OpenTelemetry at the chart's sampling (parent-based, ratio
  0.1; the exporter points at a closed port, so no export work is counted);
- ``auth+tracing``: both, as the chart deploys the services.

Per stack and round: a server process is started, 300 warm-up calls, then ``--calls``
sequential calls; CPU (user + system, /proc) of the client and of the server process
over those calls, divided by the calls. Medians over rounds; stacks interleaved round by
round. Writes bench-results/hop-cost.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from tools.bench._platform import cpu_seconds
from tools.bench._report import write_report

STACKS = ("bare", "magpie", "auth", "tracing", "auth+tracing")
WARMUP_CALLS = 300
_TRACING = {
    "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9",
    "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
    "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
    "OTEL_TRACES_SAMPLER_ARG": "0.1",
}


def _settings(stack: str, folder: Path, port: int = 0) -> Any:
    from magpie.runtime.settings import Settings

    auth = "auth" in stack
    return Settings(
        host="127.0.0.1",
        port=port,
        auth_tokens_file=str(folder / "callers.json") if auth else "",
        auth_token_file=str(folder / "token") if auth else "",
    )


async def _serve(stack: str, folder: Path) -> None:
    """The server process: a trivial ProfileService behind the stack, until stdin closes."""
    import grpc

    from magpie.runtime.server import ServiceSpec, start_server
    from magpie.runtime.telemetry import setup_tracing
    from magpie.v1 import profiles_pb2, profiles_pb2_grpc

    class Trivial(profiles_pb2_grpc.ProfileServiceServicer):
        async def GetProfile(
            self, request: profiles_pb2.GetProfileRequest, context: grpc.aio.ServicerContext
        ) -> profiles_pb2.GetProfileResponse:
            return profiles_pb2.GetProfileResponse()

    def register(server: grpc.aio.Server) -> None:
        trivial = Trivial()  # type: ignore[abstract]  # only GetProfile is called
        profiles_pb2_grpc.add_ProfileServiceServicer_to_server(trivial, server)

    if stack == "bare":
        server = grpc.aio.server()
        register(server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        stop = server.stop
    else:
        settings = _settings(stack, folder)
        setup_tracing("hop-cost", settings)
        spec = ServiceSpec(
            name="profiles", service_names=["magpie.v1.ProfileService"], register=register
        )
        running = await start_server(spec, settings)
        port, stop = running.port, running.stop
    print(port, flush=True)
    await asyncio.to_thread(sys.stdin.read)
    await stop(0)


async def _calls(
    stack: str, folder: Path, port: int, server_pid: int, calls: int
) -> dict[str, float]:
    """CPU us per call of this process and of the server over ``calls`` sequential calls."""
    import grpc

    from magpie.runtime.clients import open_channel
    from magpie.runtime.telemetry import setup_tracing
    from magpie.v1 import profiles_pb2, profiles_pb2_grpc

    address = f"127.0.0.1:{port}"
    if stack == "bare":
        channel = grpc.aio.insecure_channel(address)
    else:
        settings = _settings(stack, folder)
        setup_tracing("hop-cost-client", settings)
        channel = open_channel(address, settings)
    stub = profiles_pb2_grpc.ProfileServiceStub(channel)
    request = profiles_pb2.GetProfileRequest(user_id="u1")
    for _ in range(WARMUP_CALLS):
        await stub.GetProfile(request)
    own, server = cpu_seconds([os.getpid()]), cpu_seconds([server_pid])
    for _ in range(calls):
        await stub.GetProfile(request)
    result = {
        "client_us": (cpu_seconds([os.getpid()]) - own) * 1e6 / calls,
        "server_us": (cpu_seconds([server_pid]) - server) * 1e6 / calls,
    }
    await channel.close()
    return result


@contextlib.contextmanager
def _server(stack: str, folder: Path) -> Iterator[tuple[int, int]]:
    env = {**os.environ, **(_TRACING if "tracing" in stack else {})}
    command = [sys.executable, "-m", "tools.bench.hop_cost", "--serve", stack]
    command += ["--folder", str(folder)]
    with subprocess.Popen(
        command, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    ) as process:
        assert process.stdin is not None and process.stdout is not None
        try:
            yield int(process.stdout.readline()), process.pid
        finally:
            process.stdin.close()
            process.wait(timeout=30)


def _measure(stack: str, folder: Path, calls: int) -> dict[str, float]:
    """One round of one stack: a fresh server, and this process's calls in a child (so
    each client starts with the stack's own tracer provider, or none)."""
    env = {**os.environ, **(_TRACING if "tracing" in stack else {})}
    with _server(stack, folder) as (port, pid):
        command = [sys.executable, "-m", "tools.bench.hop_cost", "--call", stack]
        command += ["--folder", str(folder), "--port", str(port), "--server-pid", str(pid)]
        command += ["--calls", str(calls)]
        done = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    figures: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return figures


def _run(args: argparse.Namespace) -> dict[str, Any]:
    from magpie.runtime.auth import new_token

    with tempfile.TemporaryDirectory(prefix="magpie-hop-") as name:
        folder = Path(name)
        token, entry = new_token("caller", "admin")
        (folder / "callers.json").write_text(json.dumps(entry))
        (folder / "token").write_text(token)
        rounds: dict[str, list[dict[str, float]]] = {stack: [] for stack in STACKS}
        for _ in range(args.rounds):
            for stack in STACKS:
                rounds[stack].append(_measure(stack, folder, args.calls))
    stacks = {
        stack: {
            key: round(float(np.median([r[key] for r in runs])), 1)
            for key in ("client_us", "server_us")
        }
        for stack, runs in rounds.items()
    }
    for figures in stacks.values():
        figures["total_us"] = round(figures["client_us"] + figures["server_us"], 1)
    bare = stacks["bare"]["total_us"]
    return {
        "stacks_cpu_us_per_call": stacks,
        "ratio_to_bare": {s: round(f["total_us"] / bare, 2) for s, f in stacks.items()},
        "calls": args.calls,
        "rounds": args.rounds,
        "protocol": (
            "trivial unary GetProfile on loopback, server in its own process; per stack and "
            f"round a fresh server, {WARMUP_CALLS} warm-up calls, then sequential calls; CPU "
            "(user+system from /proc) per call on each side; medians over rounds"
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--serve", choices=STACKS, help=argparse.SUPPRESS)
    parser.add_argument("--call", choices=STACKS, help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--server-pid", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(_serve(args.serve, args.folder))
        return
    if args.call:
        figures = asyncio.run(
            _calls(args.call, args.folder, args.port, args.server_pid, args.calls)
        )
        print(json.dumps(figures))
        return
    result = _run(args)
    print(f"{'stack':<14} {'client us':>10} {'server us':>10} {'total us':>10} {'x bare':>7}")
    for stack, figures in result["stacks_cpu_us_per_call"].items():
        cells = [figures[k] for k in ("client_us", "server_us", "total_us")]
        cells.append(result["ratio_to_bare"][stack])
        print(f"{stack:<14} " + " ".join(f"{c:>10}" for c in cells[:3]) + f" {cells[3]:>7}")
    print(f"wrote {write_report('hop-cost', result)}")


if __name__ == "__main__":
    main()
