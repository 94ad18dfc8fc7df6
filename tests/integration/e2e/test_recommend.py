"""End to end: every real process, a generated world, a trained model, Recommend."""

from __future__ import annotations

import asyncio
import shutil
import time
from collections import Counter

import grpc
import pytest

from magpie.datasets.warehouse import POSITIVE_KINDS
from magpie.modelstore import registry
from magpie.modelstore.lifecycle import connection, roll_back, roll_out
from magpie.v1 import catalog_pb2, catalog_pb2_grpc, common_pb2, ranking_pb2, ranking_pb2_grpc
from tests.integration.e2e.clients import Clients
from tests.integration.e2e.conftest import Platform
from tests.support import field_violations

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(600)]

K = 10


def _recommend(platform: Platform, user_id: str, **fields: object) -> ranking_pb2.RecommendResponse:
    with grpc.insecure_channel(platform.settings.ranking_addr) as channel:
        stub = ranking_pb2_grpc.RankingServiceStub(channel)
        return stub.Recommend(ranking_pb2.RecommendRequest(user_id=user_id, **fields), timeout=5)


def _products(platform: Platform, ids: list[str]) -> dict[str, catalog_pb2.Product]:
    with grpc.insecure_channel(platform.settings.catalog_addr) as channel:
        reply = catalog_pb2_grpc.CatalogServiceStub(channel).GetProducts(
            catalog_pb2.GetProductsRequest(product_ids=ids, include_inactive=True), timeout=5
        )
    return {p.product_id: p for p in reply.products}


def test_recommendations_are_valid_and_beat_popularity(platform: Platform) -> None:
    world = platform.world
    popularity = Counter(i.item_id for i in world.loaded.interactions if i.kind in POSITIVE_KINDS)
    seen: dict[str, set[str]] = {}
    for i in world.loaded.interactions:
        seen.setdefault(i.user_id, set()).add(i.item_id)
    purchased = {
        (i.user_id, i.item_id) for i in world.loaded.interactions if i.kind.value == "purchase"
    }
    ours = popular = 0
    for user_id, target in world.held_out.items():
        excluded = sorted(seen[user_id])[:3]
        reply = _recommend(
            platform,
            user_id,
            k=K,
            filter=common_pb2.ProductFilter(exclude_product_ids=excluded),
        )
        ids = [item.product_id for item in reply.items]
        products = _products(platform, ids)

        assert len(ids) == K == len(set(ids))
        assert reply.model_version == str(platform.version) and not reply.degradations
        assert not set(ids) & set(excluded)
        assert not {(user_id, pid) for pid in ids} & purchased
        for pid in ids:
            assert products[pid].status == catalog_pb2.PRODUCT_STATUS_ACTIVE
            assert products[pid].stock > 0
        assert all(item.reason.text for item in reply.items)

        ours += target in ids
        baseline = [p for p, _ in popularity.most_common() if p not in seen[user_id]][:K]
        popular += target in baseline

    users = len(world.held_out)
    assert users >= 200
    assert ours / users > popular / users, (ours, popular, users)


def test_triton_down_degrades_within_the_deadline_then_recovers(platform: Platform) -> None:
    local = platform.local
    local.stop("triton")
    try:
        started = time.monotonic()
        reply = _recommend(platform, "u000001", k=K)
        elapsed = time.monotonic() - started

        assert ranking_pb2.DEGRADATION_RANKER_UNAVAILABLE in reply.degradations
        assert len(reply.items) == K
        assert elapsed < 1.0
    finally:
        local.up(["ranking"])  # Triton restarts with the published versions

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        reply = _recommend(platform, "u000001", k=K)
        if not reply.degradations:
            break
        time.sleep(0.5)
    assert not reply.degradations
    assert reply.model_version == str(platform.version)


async def test_rollout_and_rollback_fail_and_degrade_no_call(platform: Platform) -> None:
    """Promotion and rollback are switches between loaded versions, strictly: zero failed
    and zero degraded answers while clients loop. Then the previous version, still held,
    ranks when a caller names it; a version no replica holds is the caller's mistake."""
    settings = platform.settings
    with connection(settings) as conn:
        served = registry.aliases(conn, settings.model_name)["champion"]
        version = registry.next_version(conn, settings.model_name)
        source = platform.local.layout.artifact_dir / str(served)
        target = source.parent / str(version)
        shutil.copytree(source, target)
        registry.register_candidate(conn, settings.model_name, version, {}, str(target))

    async with Clients(settings.ranking_addr) as clients:
        await clients.answered_by(served)
        await asyncio.to_thread(roll_out, settings, version, "manual")
        await clients.answered_by(version)
        rollback_started = time.monotonic()
        await asyncio.to_thread(roll_back, settings)
        await clients.answered_by(served)
        rollback_seconds = time.monotonic() - rollback_started
    named = _recommend(platform, "u000001", k=K, model_version=str(version))
    with pytest.raises(grpc.RpcError) as unknown:
        _recommend(platform, "u000001", k=K, model_version=str(version + 1))

    assert clients.failures == []
    assert clients.degraded == []
    assert clients.versions[str(version)] >= 20
    assert clients.versions[str(served)] >= 40
    assert rollback_seconds < 10  # an alias change the replicas follow within a poll
    assert named.model_version == str(version) and not named.degradations
    assert len(named.items) == K
    assert field_violations(unknown.value) == ["model_version"]


def test_users_with_a_clear_history_get_reasons_anchored_on_their_items(platform: Platform) -> None:
    """Issue 19: "Because you viewed X" names a product of the user's own history, and
    "Picked for you" is left for the few items nothing more specific explains."""
    seen: dict[str, set[str]] = {}
    for i in platform.world.loaded.interactions:
        seen.setdefault(i.user_id, set()).add(i.item_id)
    users = list(platform.world.held_out)[:20]
    replies = {user_id: _recommend(platform, user_id, k=K) for user_id in users}
    items = [(u, item) for u, reply in replies.items() for item in reply.items]
    kinds = Counter(ranking_pb2.ReasonType.Name(item.reason.type) for _, item in items)
    picked_for_you = sum(item.reason.text == "Picked for you" for _, item in items)

    assert all(replies[u].items for u in users)
    assert kinds["REASON_TYPE_RELATED_TO_ITEM"] >= len(items) / 2, kinds
    assert picked_for_you <= len(items) / 10, (picked_for_you, kinds)
    anchored = [(u, item) for u, item in items if item.reason.anchor_product_id]
    titles = _products(platform, sorted({item.reason.anchor_product_id for _, item in anchored}))
    for user_id, item in anchored:
        anchor = item.reason.anchor_product_id
        assert item.reason.type == ranking_pb2.REASON_TYPE_RELATED_TO_ITEM
        assert anchor in seen[user_id], (user_id, anchor)
        assert item.reason.text == f"Because you viewed {titles[anchor].title}"
