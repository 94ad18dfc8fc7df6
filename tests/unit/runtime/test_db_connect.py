"""The libpq arguments of service connections: limits and keepalives compose with the URL."""

from __future__ import annotations

from magpie.runtime.db import Limits, connect_args

LIMITS = Limits(
    statement_timeout_ms=2000,
    lock_timeout_ms=1000,
    idle_in_transaction_timeout_ms=0,
    keepalives_idle_seconds=5,
    keepalives_interval_seconds=2,
    keepalives_count=3,
)


def test_limits_become_session_options_and_keepalives() -> None:
    args = connect_args("postgresql://app@db:5432/magpie", "magpie-profiles", LIMITS)

    assert args["dsn"] == "postgresql://app@db:5432/magpie"
    assert args["options"] == "-c statement_timeout=2000 -c lock_timeout=1000"
    assert args["application_name"] == "magpie-profiles"
    assert (args["keepalives"], args["keepalives_idle"]) == (1, 5)
    assert (args["keepalives_interval"], args["keepalives_count"]) == (2, 3)


def test_the_url_keeps_its_own_parameters_and_options() -> None:
    url = (
        "postgresql://app@db/magpie?sslmode=require&application_name=ops"
        "&keepalives_idle=30&options=-c%20search_path%3Dshop"
    )
    args = connect_args(url, "magpie-profiles", LIMITS)

    assert args["options"] == "-c search_path=shop -c statement_timeout=2000 -c lock_timeout=1000"
    assert "application_name" not in args  # the URL's "ops" stands
    assert "keepalives_idle" not in args
    assert args["keepalives_count"] == 3


def test_no_limits_no_options_and_the_os_keepalive_times() -> None:
    args = connect_args("postgresql:///magpie", "magpie-x", Limits())

    assert "options" not in args
    assert args["keepalives"] == 1
    assert not {"keepalives_idle", "keepalives_interval", "keepalives_count"} & set(args)
