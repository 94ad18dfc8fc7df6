"""The long fuzzing run: at least 10,000 calls across every RPC of the five services, drawn
from the proto descriptors by the CI test's strategies (tests/fuzz_strategies.py) and
checked for the same property (tests/support_fuzz.py): a documented status code,
DEADLINE_EXCEEDED only under a tiny deadline, a google.rpc.BadRequest naming a field with
every INVALID_ARGUMENT, no partial write, and every service SERVING at the end.

    python -m tools.bench.fuzz                   # 10,000 cases
    python -m tools.bench.fuzz --cases 1000 --seed 7

The platform is the test's: the five services as processes against a throwaway database
(dropped at the end) and a Redis database of its own (``--redis-url``, emptied first),
seeded, with no model. Unlike the test, a
failure does not stop the run and is not shrunk: each distinct one (RPC, code, what broke
the property, the exception the service logged, numbers left out) is kept with its
shortest example.
Prints a table per RPC (cases, codes seen, internal errors) and writes
bench-results/fuzz.json.
"""

from __future__ import annotations

import argparse
import math
import re
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from hypothesis import HealthCheck, Phase, given, seed, settings

from tests.fuzz_strategies import RPCS, Call, Rpc, calls
from tests.support_fuzz import Fuzzer, FuzzPlatform, fuzz_platform
from tools.bench._report import write_report

_INTERNAL = (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN)
_EXCEPTION_LINE = re.compile(r"^(?:[\w.]+\.)?\w+(?:Error|Exception|Exceeded)\b.*$", re.MULTILINE)


@dataclass
class _Tally:
    """What one RPC's calls ended with."""

    codes: Counter[str] = field(default_factory=Counter)
    internal: int = 0
    violations: int = 0

    @property
    def cases(self) -> int:
        return sum(self.codes.values())


class _Logs:
    """Reads each service's log from where the previous read stopped."""

    def __init__(self, platform: FuzzPlatform) -> None:
        self._platform = platform
        self._offsets: dict[str, int] = {}

    def new_exception(self, service: str) -> str:
        """The last exception line the service logged since the previous call, if any."""
        log = self._platform.processes[service].log
        with log.open("rb") as f:
            f.seek(self._offsets.get(service, 0))
            text = f.read().decode(errors="replace")
            self._offsets[service] = f.tell()
        found = _EXCEPTION_LINE.findall(text)
        return found[-1][:300] if found else ""


def _fuzz(
    rpc: Rpc, fuzzer: Fuzzer, logs: _Logs, examples: int, run_seed: int
) -> tuple[_Tally, dict[tuple[str, str, str], Call]]:
    """``examples`` calls of ``rpc``; their tally and the shortest example of each failure."""
    tally = _Tally()
    failures: dict[tuple[str, str, str], Call] = {}

    @seed(run_seed)
    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(calls(rpc))
    def one(call: Call) -> None:
        outcome = fuzzer.check(call)
        tally.codes[outcome.code.name] += 1
        tally.internal += outcome.code in _INTERNAL
        cause = re.sub(r"-?\d+", "N", logs.new_exception(rpc.service))
        if outcome.problem is None:
            return
        tally.violations += 1
        problem = re.sub(r"\[.*\]", "[...]", outcome.problem)[:300]
        key = (outcome.code.name, problem, cause)
        if key not in failures or len(repr(call)) < len(repr(failures[key])):
            failures[key] = call

    one()
    return tally, failures


def _run(args: argparse.Namespace) -> dict[str, Any]:
    examples = math.ceil(args.cases / len(RPCS))
    tallies: dict[str, _Tally] = {}
    failures: list[dict[str, str]] = []
    started = time.monotonic()
    with (
        tempfile.TemporaryDirectory(prefix="magpie-fuzz-") as state,
        fuzz_platform(Path(state), args.redis_url) as platform,
        Fuzzer(platform) as fuzzer,
    ):
        logs = _Logs(platform)
        for rpc in RPCS:
            tally, found = _fuzz(rpc, fuzzer, logs, examples, args.seed)
            tallies[str(rpc)] = tally
            failures += [
                {"rpc": str(rpc), "code": code, "problem": problem, "cause": cause}
                | {"example": repr(call)[:1500]}
                for (code, problem, cause), call in found.items()
            ]
            print(f"{rpc}: {tally.cases} cases, {tally.violations} violations", flush=True)
        not_serving = platform.not_serving()
    return {
        "fuzz_cases": sum(t.cases for t in tallies.values()),
        "fuzz_internal_errors": sum(t.internal for t in tallies.values()),
        "fuzz_property_violations": sum(t.violations for t in tallies.values()),
        "services_serving_after": not not_serving,
        "not_serving": not_serving,
        "per_rpc": {
            name: {
                "cases": t.cases,
                "codes": dict(sorted(t.codes.items())),
                "internal_errors": t.internal,
                "property_violations": t.violations,
            }
            for name, t in tallies.items()
        },
        "distinct_failures": failures,
        "examples_per_rpc": examples,
        "seed": args.seed,
        "seconds": round(time.monotonic() - started, 1),
        "protocol": (
            "The five services as processes (no model, no Triton) against a throwaway "
            "database seeded with 4 products, 3 users and their events; per RPC, "
            "examples_per_rpc calls drawn by Hypothesis (generate phase only, no shrinking) "
            "from the request descriptors with hostile values, one client, one call at a "
            "time, each checked: documented code, DEADLINE_EXCEEDED only under a tiny "
            "deadline, BadRequest naming a request field, no partial write; health SERVING "
            "at the end."
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tools.bench.fuzz", description=__doc__)
    parser.add_argument("--cases", type=int, default=10_000, help="total, across all RPCs")
    parser.add_argument("--seed", type=int, default=17)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/14")
    result = _run(parser.parse_args())
    print(f"\n{'rpc':<34} {'cases':>6} {'internal':>8} {'violations':>10}  codes")
    for name, row in result["per_rpc"].items():
        codes = ", ".join(f"{code} {n}" for code, n in row["codes"].items())
        print(
            f"{name:<34} {row['cases']:>6} {row['internal_errors']:>8} "
            f"{row['property_violations']:>10}  {codes}"
        )
    print(
        f"\n{result['fuzz_cases']} cases, {result['fuzz_internal_errors']} internal errors, "
        f"{result['fuzz_property_violations']} property violations, "
        f"{len(result['distinct_failures'])} distinct failures; services serving after: "
        f"{result['services_serving_after']}"
    )
    for failure in result["distinct_failures"]:
        print(f"- {failure['rpc']} {failure['code']}: {failure['problem']} [{failure['cause']}]")
    print(f"wrote {write_report('fuzz', result)}")


if __name__ == "__main__":
    main()
