"""The retrieval service over gRPC against PostgreSQL, real bundles and a profile server."""

from __future__ import annotations

import asyncio
import json
import random
from collections import Counter
from pathlib import Path

import grpc
import numpy as np
import onnxruntime as ort
import psycopg2
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from magpie.contract.signature import (
    FIRST_ITEM_INDEX,
    HISTORY_IDS,
    PAD_INDEX,
    USER_TOWER_HISTORY_LEN,
)
from magpie.modelstore import bundle
from magpie.v1 import common_pb2, retrieval_pb2_grpc
from magpie.v1 import retrieval_pb2 as pb
from services.retrieval.server import build_spec
from tests.integration.retrieval.conftest import (
    BRAND,
    CATEGORY,
    NEVER,
    PRICE_UNITS,
    PRODUCTS,
    publish,
    put_history,
)
from tests.support import field_violations, free_port

pytestmark = pytest.mark.integration

ANN = common_pb2.CANDIDATE_SOURCE_ANN
COVISITATION = common_pb2.CANDIDATE_SOURCE_COVISITATION
POPULAR = common_pb2.CANDIDATE_SOURCE_POPULAR
CONTENT = common_pb2.CANDIDATE_SOURCE_CONTENT
RECENT = ["p010", "p021", "p033"]


async def _start(serve, settings, poll_seconds: float = 0.2) -> str:  # type: ignore[no-untyped-def]
    settings = settings.model_copy(update={"model_poll_seconds": poll_seconds})
    running = await serve(build_spec(settings), settings)
    async with grpc.aio.insecure_channel(running.address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for _ in range(100):
            reply = await health.Check(health_pb2.HealthCheckRequest(service=""))
            if reply.status == health_pb2.HealthCheckResponse.SERVING:
                break
            await asyncio.sleep(0.05)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
    return str(running.address)


async def _retrieve(address: str, request: pb.RetrieveRequest) -> pb.RetrieveResponse:
    async with grpc.aio.insecure_channel(address) as channel:
        reply: pb.RetrieveResponse = await retrieval_pb2_grpc.RetrievalServiceStub(
            channel
        ).Retrieve(request, timeout=10)
        return reply


def _exact_ann(bundle_dir: Path, recent: list[str]) -> list[str]:
    """All products by dot product with the user vector, computed independently."""
    rows = {p: i + FIRST_ITEM_INDEX for i, p in enumerate(PRODUCTS)}
    history = np.full((1, USER_TOWER_HISTORY_LEN), PAD_INDEX, dtype=np.int64)
    history[0, -len(recent) :] = [rows[p] for p in reversed(recent)]
    session = ort.InferenceSession(str(bundle_dir / "user_tower.onnx"))
    user = session.run(None, {HISTORY_IDS: history})[0][0]
    scores = np.load(bundle_dir / "item_vectors.npy")[FIRST_ITEM_INDEX:] @ user
    return [PRODUCTS[i] for i in np.argsort(-scores, kind="stable")]


async def test_each_source_contributes_and_is_labelled(
    retrieval_settings, serve, clean_db: str, bundles: Path
) -> None:  # type: ignore[no-untyped-def]
    publish(clean_db, retrieval_settings().model_name, 1)
    address = await _start(serve, retrieval_settings())
    quotas = {ANN: 10, COVISITATION: 5, CONTENT: 5, POPULAR: 5}

    request = pb.RetrieveRequest(
        user_id="u1",
        limit=100,
        recent_product_ids=RECENT,
        quotas=[pb.SourceQuota(source=s, max_candidates=q) for s, q in quotas.items()],
    )
    reply = await _retrieve(address, request)

    by_source: dict[int, list[pb.Candidate]] = {}
    for c in reply.candidates:
        by_source.setdefault(c.source, []).append(c)
    assert reply.model_version == "1"
    counts = {s: len(cs) for s, cs in by_source.items()}
    assert set(counts) == set(quotas)
    assert all(0 < counts[s] <= quotas[s] for s in quotas)  # co-visitation may run short
    assert counts[ANN] == quotas[ANN]
    expected_ann = [p for p in _exact_ann(bundles / "1", RECENT) if p not in NEVER][:10]
    assert [c.product_id for c in by_source[ANN]] == expected_ann
    for c in by_source[COVISITATION]:
        assert c.anchor_product_id in RECENT
        offset = (PRODUCTS.index(c.product_id) - PRODUCTS.index(c.anchor_product_id)) % 80
        assert offset in (4, 8, 12)  # the bundle's co-visitation neighbours
    for c in by_source[CONTENT]:
        assert c.anchor_product_id in RECENT
        assert c.product_id not in RECENT
    assert all(not c.anchor_product_id for c in by_source[POPULAR])
    ids = [c.product_id for c in reply.candidates]
    assert len(ids) == len(set(ids))
    assert not reply.HasField("columns")

    columnar = pb.RetrieveRequest()
    columnar.CopyFrom(request)
    columnar.columnar = True
    packed = await _retrieve(address, columnar)
    assert not packed.candidates
    columns = packed.columns
    assert list(columns.product_ids) == ids
    assert list(columns.scores) == [c.score for c in reply.candidates]
    assert list(columns.sources) == [c.source for c in reply.candidates]
    assert list(columns.anchor_product_ids) == [c.anchor_product_id for c in reply.candidates]


async def test_quotas_cap_sources_and_limit_cuts_them_proportionally(
    retrieval_settings, serve, clean_db: str
) -> None:  # type: ignore[no-untyped-def]
    publish(clean_db, retrieval_settings().model_name, 1)
    address = await _start(serve, retrieval_settings())
    request = pb.RetrieveRequest(
        user_id="u1",
        limit=12,
        recent_product_ids=RECENT,
        quotas=[
            pb.SourceQuota(source=ANN, max_candidates=20),
            pb.SourceQuota(source=COVISITATION, max_candidates=0),
            pb.SourceQuota(source=POPULAR, max_candidates=20),
            pb.SourceQuota(source=CONTENT, max_candidates=0),
        ],
    )

    reply = await _retrieve(address, request)

    counts = Counter(c.source for c in reply.candidates)
    assert len(reply.candidates) == 12
    assert COVISITATION not in counts
    assert counts == {ANN: 6, POPULAR: 6}  # interleaved by share of quota, not ANN first


async def test_excluded_products_are_never_returned(
    retrieval_settings, serve, clean_db: str
) -> None:  # type: ignore[no-untyped-def]
    publish(clean_db, retrieval_settings().model_name, 1)
    address = await _start(serve, retrieval_settings())
    rng = random.Random(5)
    for n in range(30):
        user = f"u{n}"
        recent = rng.sample(PRODUCTS, rng.randint(0, 8))
        purchased = rng.sample(PRODUCTS, rng.randint(0, 10))
        put_history(clean_db, user, recent, purchased)
        excluded = rng.sample(PRODUCTS, 5)
        prefixes = rng.choice([[], ["Home"], ["Home > Garden", "Books"], ["Sports > Running"]])
        brands = rng.choice([[], ["acme"], ["bolt", "cora"]])
        bounds = rng.choice([None, (10, 30), (0, 20)])
        request_filter = common_pb2.ProductFilter(
            category_prefixes=prefixes, brands=brands, exclude_product_ids=excluded
        )
        if bounds:
            request_filter.min_price.CopyFrom(
                common_pb2.Money(currency_code="EUR", units=bounds[0])
            )
            request_filter.max_price.CopyFrom(
                common_pb2.Money(currency_code="EUR", units=bounds[1])
            )

        reply = await _retrieve(address, pb.RetrieveRequest(user_id=user, filter=request_filter))

        returned = {c.product_id for c in reply.candidates}
        personal = {c.source for c in reply.candidates} - {POPULAR, CONTENT}
        assert returned, f"user {n} got nothing"
        assert bool(personal) == bool(recent or purchased), n  # the profile was read
        assert not returned & (NEVER | set(purchased) | set(excluded)), n
        for p in returned:
            top, *_ = CATEGORY[p].split(" > ")
            assert not prefixes or any(CATEGORY[p].startswith(x) or top == x for x in prefixes)
            assert not brands or BRAND[p] in brands
            assert not bounds or bounds[0] <= PRICE_UNITS[p] <= bounds[1]


async def test_cold_user_gets_popular_and_content(retrieval_settings, serve, clean_db: str) -> None:  # type: ignore[no-untyped-def]
    publish(clean_db, retrieval_settings().model_name, 1)
    address = await _start(serve, retrieval_settings())

    reply = await _retrieve(address, pb.RetrieveRequest(user_id="stranger"))

    sources = Counter(c.source for c in reply.candidates)
    assert set(sources) == {POPULAR, CONTENT}
    popular = [c.product_id for c in reply.candidates if c.source == POPULAR]
    assert popular == sorted(popular)  # by popularity (the seed makes p000 most popular)
    returned = {c.product_id for c in reply.candidates}
    assert {p for p in PRODUCTS if p not in NEVER}.issuperset(returned)
    assert set([p for p in PRODUCTS if p not in NEVER][:5]) <= returned
    assert all(c.anchor_product_id in popular for c in reply.candidates if c.source == CONTENT)


async def test_profile_service_down_degrades_to_non_personal_sources(
    retrieval_settings, serve, clean_db: str
) -> None:  # type: ignore[no-untyped-def]
    publish(clean_db, retrieval_settings().model_name, 1)
    address = await _start(serve, retrieval_settings(profiles_addr=f"127.0.0.1:{free_port()}"))

    reply = await _retrieve(address, pb.RetrieveRequest(user_id="u1"))

    assert reply.candidates
    assert {c.source for c in reply.candidates} <= {POPULAR, CONTENT}
    assert reply.model_version == "1"


async def test_without_a_model_popularity_still_serves(
    retrieval_settings, serve, clean_db: str
) -> None:  # type: ignore[no-untyped-def]
    address = await _start(serve, retrieval_settings())

    reply = await _retrieve(address, pb.RetrieveRequest(user_id="u1", recent_product_ids=RECENT))

    assert reply.model_version == ""
    assert reply.candidates
    assert {c.source for c in reply.candidates} == {POPULAR}


async def test_hot_swap_drops_no_call(retrieval_settings, serve, clean_db: str) -> None:  # type: ignore[no-untyped-def]
    settings = retrieval_settings()
    publish(clean_db, settings.model_name, 1)
    address = await _start(serve, settings, poll_seconds=0.1)
    versions: list[str] = []
    failures: list[Exception] = []
    stop = asyncio.Event()

    async def client() -> None:
        async with grpc.aio.insecure_channel(address) as channel:
            stub = retrieval_pb2_grpc.RetrievalServiceStub(channel)
            while not stop.is_set():
                try:
                    reply = await stub.Retrieve(
                        pb.RetrieveRequest(user_id="u1", recent_product_ids=RECENT), timeout=5
                    )
                    versions.append(reply.model_version)
                except grpc.aio.AioRpcError as error:
                    failures.append(error)

    async def served(version: str, calls: int) -> None:
        """Until `calls` more answers came from `version` (or 10 s passed)."""
        target = versions.count(version) + calls
        for _ in range(200):
            if versions.count(version) >= target:
                return
            await asyncio.sleep(0.05)

    clients = [asyncio.create_task(client()) for _ in range(3)]
    await served("1", 10)
    await asyncio.to_thread(publish, clean_db, settings.model_name, 2)
    await served("2", 10)
    stop.set()
    await asyncio.gather(*clients)

    assert failures == []
    assert versions[0] == "1" and versions[-1] == "2"
    assert set(versions) == {"1", "2"}


async def test_similar_products(retrieval_settings, serve, clean_db: str) -> None:  # type: ignore[no-untyped-def]
    publish(clean_db, retrieval_settings().model_name, 1)
    address = await _start(serve, retrieval_settings())

    async with grpc.aio.insecure_channel(address) as channel:
        stub = retrieval_pb2_grpc.RetrievalServiceStub(channel)
        reply = await stub.SimilarProducts(pb.SimilarProductsRequest(product_id="p010", limit=9))
        with pytest.raises(grpc.aio.AioRpcError) as missing:
            await stub.SimilarProducts(pb.SimilarProductsRequest(product_id="nope"))

    assert len(reply.candidates) == 9
    assert {c.source for c in reply.candidates} == {ANN, COVISITATION, CONTENT}
    assert all(c.anchor_product_id == "p010" != c.product_id for c in reply.candidates)
    assert not {c.product_id for c in reply.candidates} & NEVER
    assert missing.value.code() is grpc.StatusCode.NOT_FOUND


def _exact_text_neighbours(bundle_dir: Path, product: str) -> list[str]:
    """Products by cosine of their text vectors with `product`'s, computed independently."""
    text = np.load(bundle_dir / bundle.TEXT_VECTORS)[FIRST_ITEM_INDEX:]
    scores = text @ text[PRODUCTS.index(product)]
    return [PRODUCTS[i] for i in np.argsort(-scores, kind="stable") if PRODUCTS[i] != product]


async def test_similar_products_from_chosen_sources_only(
    retrieval_settings, serve, clean_db: str, bundles: Path
) -> None:  # type: ignore[no-untyped-def]
    publish(clean_db, retrieval_settings().model_name, 1)
    address = await _start(serve, retrieval_settings())
    with psycopg2.connect(clean_db) as conn, conn.cursor() as cur:
        cur.execute(
            "INSERT INTO products (product_id, title, category_path, stock, status)"
            " VALUES ('unmodelled', 'New', %s, 10, 1)",
            (CATEGORY["p010"],),
        )
    conn.close()

    def similar(product: str, *sources: int) -> pb.SimilarProductsRequest:
        return pb.SimilarProductsRequest(product_id=product, limit=9, sources=sources)

    async with grpc.aio.insecure_channel(address) as channel:
        stub = retrieval_pb2_grpc.RetrievalServiceStub(channel)
        content = await stub.SimilarProducts(similar("p010", CONTENT))
        covisited = await stub.SimilarProducts(similar("p010", COVISITATION, COVISITATION))
        both = await stub.SimilarProducts(similar("p010", CONTENT, COVISITATION))
        unknown = await stub.SimilarProducts(similar("unmodelled", CONTENT))

    expected = [p for p in _exact_text_neighbours(bundles / "1", "p010") if p not in NEVER]
    assert [(c.product_id, c.source) for c in content.candidates] == [
        (p, CONTENT) for p in expected[:9]
    ]
    # The bundle co-visits each product with the 4th, 8th and 12th after it: three only.
    assert [(c.product_id, c.source) for c in covisited.candidates] == [
        ("p014", COVISITATION),
        ("p018", COVISITATION),
        ("p022", COVISITATION),
    ]
    assert {c.source for c in both.candidates} == {CONTENT, COVISITATION}
    assert len(both.candidates) == 9
    assert {c.source for c in unknown.candidates} == {POPULAR}  # whatever the sources
    assert len(unknown.candidates) == 9


async def test_invalid_requests_name_the_fields(retrieval_settings, serve) -> None:  # type: ignore[no-untyped-def]
    address = await _start(serve, retrieval_settings())
    bad = pb.RetrieveRequest(
        user_id="u1",
        limit=5000,
        filter=common_pb2.ProductFilter(
            category_prefixes=["Home", " "],
            min_price=common_pb2.Money(currency_code="eur", units=1),
            exclude_product_ids=[""],
        ),
        quotas=[
            pb.SourceQuota(source=ANN, max_candidates=-1),
            pb.SourceQuota(source=common_pb2.CANDIDATE_SOURCE_CALLER, max_candidates=3),
        ],
    )

    async with grpc.aio.insecure_channel(address) as channel:
        stub = retrieval_pb2_grpc.RetrievalServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await stub.Retrieve(bad)
        with pytest.raises(grpc.aio.AioRpcError) as similar:
            await stub.SimilarProducts(pb.SimilarProductsRequest(product_id="p1", limit=501))
        with pytest.raises(grpc.aio.AioRpcError) as sources:
            await stub.SimilarProducts(
                pb.SimilarProductsRequest(
                    product_id="p1",
                    sources=[
                        CONTENT,
                        POPULAR,
                        common_pb2.CANDIDATE_SOURCE_CALLER,
                        common_pb2.CANDIDATE_SOURCE_UNSPECIFIED,
                        ANN,
                        99,
                    ],
                )
            )

    assert field_violations(raised.value) == [
        "limit",
        "filter.category_prefixes[1]",
        "filter.exclude_product_ids[0]",
        "filter.min_price.currency_code",
        "quotas[0].max_candidates",
        "quotas[1].source",
    ]
    assert field_violations(similar.value) == ["limit"]
    assert field_violations(sources.value) == [
        "sources[1]",
        "sources[2]",
        "sources[3]",
        "sources[5]",
    ]


def test_bundle_versions_differ(bundles: Path) -> None:
    """Guards the hot-swap test: the two versions must rank differently."""
    one = json.loads((bundles / "1" / "vocab.json").read_text())
    assert one["item_ids"] == PRODUCTS
    assert not np.allclose(
        np.load(bundles / "1" / "item_vectors.npy"), np.load(bundles / "2" / "item_vectors.npy")
    )


async def test_popularity_decayed_over_decades_still_serves(
    retrieval_settings, serve, clean_db: str
) -> None:  # type: ignore[no-untyped-def]
    """MovieLens dates from 1998: 0.5 ** (28 years / 7 days) underflows a double, which
    PostgreSQL answers with an error unless the exponent is capped."""
    with psycopg2.connect(clean_db) as conn, conn.cursor() as cur:
        cur.execute("UPDATE product_popularity SET as_of = now() - interval '28 years'")
    conn.close()
    address = await _start(serve, retrieval_settings())

    reply = await _retrieve(address, pb.RetrieveRequest(user_id="stranger"))

    popular = [c.product_id for c in reply.candidates if c.source == POPULAR]
    assert popular and popular == sorted(popular)  # the scores' order survives the decay
