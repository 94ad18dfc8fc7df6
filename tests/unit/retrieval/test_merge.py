"""Merge, quotas, dedupe and the service's cold/excluded paths with hand-built inputs."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from magpie.runtime.filters import ProductFilter
from services.retrieval import config
from services.retrieval.merge import Candidates, first_occurrences, merge, proposed_ids
from services.retrieval.model import ServingModel
from services.retrieval.service import (
    Popularity,
    Ranked,
    RetrievalService,
    RetrieveQuery,
    UserHistory,
    _popular,
)

ANN, COVIS, POPULAR, CONTENT = config.ANN, config.COVISITATION, config.POPULAR, config.CONTENT


def _list(source: int, ids: str, anchor: str = "") -> Candidates:
    names = ids.split()
    anchors = np.array([anchor] * len(names), dtype=object) if anchor else None
    return Candidates.of(source, np.array(names, object), np.arange(len(names), 0, -1), anchors)


def test_first_occurrences_marks_each_value_once_at_its_first_position() -> None:
    values = np.array(["b", "a", "b", "c", "a"], dtype=object)
    assert first_occurrences(values).tolist() == [True, True, False, True, False]
    assert first_occurrences(np.empty(0, dtype=object)).tolist() == []


def test_popular_reads_the_lists_deeper_when_their_first_turns_repeat_products() -> None:
    kitchen = Ranked(np.array(["p1", "p2", "p3", "k1"], object), np.array([4.0, 3, 2, 1]))
    overall = Ranked(np.array(["p1", "p2", "p3", "h1"], object), np.array([8.0, 6, 4, 2]))
    popularity = Popularity(overall=overall, by_category={"Kitchen": kitchen})

    found = _popular(popularity, ["Kitchen"], 3)

    assert found.product_ids.tolist() == ["p1", "p2", "p3"]
    assert found.scores.tolist() == [4.0, 3.0, 2.0]
    assert _popular(popularity, ["Kitchen"], 9).product_ids.tolist() == [
        "p1",
        "p2",
        "p3",
        "k1",
        "h1",
    ]
    assert len(_popular(popularity, ["Kitchen"], 0)) == 0


def test_first_source_keeps_a_shared_product() -> None:
    lists = [_list(ANN, "a b c"), _list(COVIS, "b d", anchor="x")]

    merged = merge(lists, {ANN: 10, COVIS: 10}, 10, allowed=proposed_ids(lists))

    assert dict(zip(merged.product_ids, merged.sources, strict=True)) == {
        "a": ANN,
        "b": ANN,
        "c": ANN,
        "d": COVIS,
    }
    assert merged.anchors[list(merged.product_ids).index("d")] == "x"


def test_a_shared_product_keeps_the_anchor_of_the_first_anchored_source() -> None:
    # Issue 19: the anchor explains the item ("Because you viewed x") whichever source keeps it.
    lists = [_list(ANN, "a b c"), _list(COVIS, "b c", anchor="x"), _list(CONTENT, "c", "y")]

    merged = merge(lists, {ANN: 10, COVIS: 10, CONTENT: 10}, 10, allowed=proposed_ids(lists))

    assert list(merged.product_ids) == ["a", "b", "c"]
    assert list(merged.sources) == [ANN] * 3
    assert list(merged.anchors) == ["", "x", "x"]


def test_disallowed_products_are_dropped_before_quotas() -> None:
    lists = [_list(ANN, "a b c d e")]

    merged = merge(lists, {ANN: 2}, 10, allowed=["b", "d", "e"])

    assert list(merged.product_ids) == ["b", "d"]


def test_quotas_cap_each_source_and_limit_interleaves() -> None:
    lists = [_list(ANN, "a1 a2 a3 a4 a5 a6"), _list(POPULAR, "p1 p2 p3 p4 p5 p6")]
    allowed = proposed_ids(lists)

    capped = merge(lists, {ANN: 2, POPULAR: 4}, 100, allowed)
    cut = merge(lists, {ANN: 6, POPULAR: 6}, 4, allowed)
    no_quota = merge(lists, {ANN: 3}, 100, allowed)

    assert list(capped.product_ids) == ["a1", "p1", "p2", "a2", "p3", "p4"]
    assert list(cut.product_ids) == ["a1", "p1", "a2", "p2"]
    assert list(no_quota.product_ids) == ["a1", "a2", "a3"]


def test_a_product_dropped_by_the_first_source_is_not_recovered_by_later_ones() -> None:
    lists = [_list(ANN, "a b"), _list(COVIS, "b c")]

    merged = merge(lists, {ANN: 1, COVIS: 5}, 10, allowed=["a", "b", "c"])

    # "b" belongs to ANN (first), which is full: it is not re-labelled as co-visitation.
    assert list(merged.product_ids) == ["a", "c"]


class _Storage:
    def __init__(self, eligible: set[str]) -> None:
        self.eligible_ids = eligible
        self.excluded: list[str] = []

    async def popularity(self) -> Popularity:
        ranked = Ranked(np.array(["p1", "p2", "p3", "h1"], object), np.array([4.0, 3, 2, 1]))
        kitchen = Ranked(np.array(["k1", "k2"], object), np.array([2.0, 1.0]))
        return Popularity(overall=ranked, by_category={"Kitchen": kitchen})

    async def top_categories(self, product_ids: Sequence[str]) -> dict[str, str]:
        return {p: "Kitchen" for p in product_ids if p.startswith("k")}

    async def eligible(
        self, product_ids: Sequence[str], where: ProductFilter, excluded: Sequence[str]
    ) -> list[str]:
        self.excluded = list(excluded)
        return [p for p in product_ids if p in self.eligible_ids and p not in excluded]


class _Profiles:
    def __init__(self, history: UserHistory | None) -> None:
        self._history = history

    async def history(self, user_id: str) -> UserHistory | None:
        return self._history


class _NoModel:
    current: ServingModel | None = None


async def test_without_model_popular_mixes_the_users_categories_and_excludes_purchases() -> None:
    storage = _Storage({"p1", "p2", "p3", "k1", "k2"})
    profiles = _Profiles(UserHistory(recent=("k9",), purchased=("p2",)))
    service = RetrievalService(storage, profiles, _NoModel())

    found = await service.retrieve(
        RetrieveQuery(user_id="u", where=ProductFilter(exclude_product_ids=("p3",)))
    )

    assert list(found.candidates.product_ids) == ["k1", "p1", "k2"]
    assert set(found.candidates.sources) == {POPULAR}
    assert sorted(storage.excluded) == ["p2", "p3"]
    assert found.model_version == ""


async def test_profile_failure_still_answers_with_popular() -> None:
    service = RetrievalService(_Storage({"p1", "p2"}), _Profiles(None), _NoModel())

    found = await service.retrieve(RetrieveQuery(user_id="u"))

    assert list(found.candidates.product_ids) == ["p1", "p2"]
