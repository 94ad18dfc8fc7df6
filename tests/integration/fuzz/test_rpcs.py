"""Every RPC, fuzzed from its proto descriptor, answers only documented codes, never
writes part of a failed request, and leaves every service SERVING (issue 17); and the
check itself notices a partial write."""

from __future__ import annotations

import grpc
import psycopg2
import pytest
from google.protobuf.message import Message
from hypothesis import HealthCheck, Phase, given, settings

from magpie.v1 import catalog_pb2
from services.catalog.config import MAX_UPSERT_BATCH
from tests.fuzz_strategies import KNOWN_PRODUCTS, RPCS, Call, Rpc, calls
from tests.support_fuzz import Fuzzer, FuzzPlatform

EXAMPLES_PER_RPC = 40
PRODUCT = KNOWN_PRODUCTS[0]


@pytest.mark.parametrize("rpc", RPCS, ids=str)
def test_fuzzed_calls_end_with_documented_codes_and_no_partial_write(
    rpc: Rpc, fuzzer: Fuzzer
) -> None:
    @settings(
        max_examples=EXAMPLES_PER_RPC,
        deadline=None,
        derandomize=True,
        database=None,
        phases=[Phase.explicit, Phase.generate, Phase.shrink],  # a shrink step is an RPC
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(calls(rpc))
    def answers_well(call: Call) -> None:
        outcome = fuzzer.check(call)
        assert outcome.problem is None, outcome.problem

    answers_well()


class _WritingBehindTheCall(Fuzzer):
    """Changes a product's row during each call, as a partial write would."""

    def _invoke(self, call: Call, answered: list[Message]) -> None:
        with psycopg2.connect(self._platform.database_url) as conn, conn.cursor() as cur:
            cur.execute("UPDATE products SET stock = stock + 1 WHERE product_id = %s", (PRODUCT,))
        conn.close()
        super()._invoke(call, answered)


def test_the_check_sees_a_row_changed_by_a_failed_or_rejected_write(
    platform: FuzzPlatform,
) -> None:
    rpc = next(r for r in RPCS if r.method.full_name == "magpie.v1.CatalogService.UpsertProducts")
    product = catalog_pb2.Product(product_id=PRODUCT)  # rejected: no title
    failed = Call(
        rpc, (catalog_pb2.UpsertProductsRequest(products=[product] * (MAX_UPSERT_BATCH + 1)),), None
    )
    rejected = Call(rpc, (catalog_pb2.UpsertProductsRequest(products=[product]),), None)

    with _WritingBehindTheCall(platform) as fuzzer:
        outcomes = [fuzzer.check(failed), fuzzer.check(rejected)]

    assert [o.code for o in outcomes] == [grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.OK]
    assert all(f"partial write: rows of ['{PRODUCT}'] changed" == o.problem for o in outcomes)


def test_every_service_still_serving_after_the_fuzzing(platform: FuzzPlatform) -> None:
    assert platform.not_serving() == []
