"""Recommend's orchestration and degradation, with hand-written fakes of its dependencies."""

from collections.abc import Sequence

import numpy as np
import pytest

from magpie.contract.covisitation import Covisitation
from magpie.contract.signature import CANDIDATE_FEATURE_DIM
from magpie.runtime.errors import InvalidArgument, Unavailable
from magpie.runtime.filters import ProductFilter
from services.ranking.domain import Candidate, Degradation, Product, Source, UserState
from services.ranking.model import ServingModel
from services.ranking.service import RankingService, RequestOptions


class Profiles:
    def __init__(self, user: UserState | None) -> None:
        self.user = user

    async def get(self, user_id: str) -> UserState:
        if self.user is None:
            raise Unavailable("profiles down")
        return self.user


class Retrieval:
    def __init__(self, candidates: list[Candidate] | None) -> None:
        self.candidates = candidates

    async def retrieve(
        self, user: UserState, limit: int, f: ProductFilter
    ) -> tuple[list[Candidate], str]:
        if self.candidates is None:
            raise Unavailable("retrieval down")
        return list(self.candidates), "7"


class Catalog:
    def __init__(self, products: dict[str, Product] | None) -> None:
        self.products_by_id = products
        self.cached: list[bool] = []
        """Whether each call would take cached product facts."""

    async def products(self, product_ids: Sequence[str], *, cached: bool) -> dict[str, Product]:
        self.cached.append(cached)
        if self.products_by_id is None:
            raise Unavailable("catalog down")
        return {p: self.products_by_id[p] for p in product_ids if p in self.products_by_id}


class Scorer:
    """Scores by the candidate's vocabulary index, so the ranker's order is known."""

    def __init__(self, up: bool = True) -> None:
        self.up = up
        self.features: list[np.ndarray] = []
        """The candidate features of every call."""

    async def score(
        self,
        model: ServingModel,
        history: np.ndarray,
        candidates: np.ndarray,
        context: np.ndarray,
        features: np.ndarray,
    ) -> np.ndarray:
        assert features.shape == (*candidates.shape, CANDIDATE_FEATURE_DIM)
        self.features.append(features)
        if not self.up:
            raise TimeoutError
        return candidates[0].astype(np.float32)


class Models:
    def __init__(self, model: ServingModel | None, *others: ServingModel) -> None:
        self.current = model
        self.loaded = {m.version: m for m in (*others, *([model] if model else []))}

    def held(self, version: int) -> ServingModel | None:
        return self.loaded.get(version)


IDS = [f"p{i}" for i in range(10)]
# Co-visitation of p0 (row 2): p5 (row 7) scores 4, p6 (row 8) 1; no other item has any.
COVISITATION = Covisitation(
    np.array([0, 0, 0] + [2] * 10, np.int64), np.array([7, 8], np.int32), np.array([4.0, 1.0], "f4")
)
MODEL = ServingModel(
    3, {pid: i + 2 for i, pid in enumerate(IDS)}, np.eye(12, 4, dtype=np.float32), COVISITATION
)


def _product(pid: str, stock: int = 3) -> Product:
    return Product(pid, pid.upper(), ("Cat",), "b", "EUR", 1, stock, True, 0.0)


def _service(
    *,
    user: UserState | None = None,
    profiles_down: bool = False,
    candidates: list[Candidate] | None = None,
    products: dict[str, Product] | None = None,
    scorer_up: bool = True,
    model: ServingModel | None = MODEL,
) -> RankingService:
    if candidates is None:
        candidates = [Candidate(pid, 1.0, Source.POPULAR) for pid in IDS]
    return RankingService(
        Profiles(None if profiles_down else (user or UserState("u"))),
        Retrieval(candidates),
        Catalog(products),
        Scorer(scorer_up),
        Models(model),
    )


PRODUCTS = {pid: _product(pid) for pid in IDS}


async def test_ranker_order_business_rules_and_attribution() -> None:
    products = {**PRODUCTS, "p9": _product("p9", stock=0)}
    service = _service(user=UserState("u", purchased=frozenset({"p8"})), products=products)

    result = await service.recommend("u", RequestOptions(k=3))

    assert [i.product_id for i in result.items] == ["p7", "p6", "p5"]
    assert result.model_version == "3"
    assert result.degradations == []
    assert len(result.recommendation_id) == 32


async def test_ranker_down_keeps_retrieval_order_and_says_so() -> None:
    service = _service(products=PRODUCTS, scorer_up=False)

    result = await service.recommend("u", RequestOptions(k=3))

    assert [i.product_id for i in result.items] == ["p0", "p1", "p2"]
    assert result.degradations == [Degradation.RANKER_UNAVAILABLE]
    assert result.model_version == "7"


async def test_retrieval_down_falls_back_to_the_last_popular_list() -> None:
    service = _service(products=PRODUCTS)
    await service.recommend("u", RequestOptions(k=3))
    service._retrieval = Retrieval(None)  # type: ignore[assignment]

    result = await service.recommend("u", RequestOptions(k=3))

    assert Degradation.RETRIEVAL_UNAVAILABLE in result.degradations
    assert len(result.items) == 3


@pytest.mark.parametrize("down", ["profiles", "catalog"])
async def test_other_dependencies_down_still_answer(down: str) -> None:
    service = _service(
        profiles_down=down == "profiles",
        products=None if down == "catalog" else PRODUCTS,
    )

    result = await service.recommend("u", RequestOptions(k=3))

    expected = (
        Degradation.PROFILE_UNAVAILABLE if down == "profiles" else Degradation.FEATURES_UNAVAILABLE
    )
    assert result.degradations == [expected]
    assert len(result.items) == 3


async def test_rank_scores_caller_candidates_and_drops_unknown_ones() -> None:
    service = _service(products=PRODUCTS)

    result = await service.rank("u", ["p1", "nope", "p4", "p1"], RequestOptions(k=10))

    assert [i.product_id for i in result.items] == ["p4", "p1"]
    assert all(i.source is Source.CALLER for i in result.items)


async def test_recommend_takes_cached_product_facts_and_rank_reads_the_catalog() -> None:
    catalog = Catalog(PRODUCTS)
    service = RankingService(
        Profiles(UserState("u")),
        Retrieval([Candidate(pid, 1.0, Source.POPULAR) for pid in IDS]),
        catalog,
        Scorer(),
        Models(MODEL),
    )

    await service.recommend("u", RequestOptions(k=3))
    recommended = list(catalog.cached)
    await service.rank("u", ["p1", "p4"], RequestOptions(k=2))

    assert recommended and all(recommended)  # retrieval checked those candidates' availability
    assert catalog.cached[len(recommended) :] == [False]  # the caller's own ids: read fresh


async def test_the_ranker_gets_the_models_covisitation_features_of_the_history() -> None:
    scorer = Scorer()
    service = RankingService(
        Profiles(UserState("u", recent_product_ids=("p0", "p3"))),  # p0 newest
        Retrieval([Candidate(pid, 1.0, Source.ANN) for pid in IDS]),
        Catalog(PRODUCTS),
        scorer,
        Models(MODEL),
    )

    await service.recommend("u", RequestOptions(k=3))
    await service.rank("u", ["p6", "nope", "p5", "p1"], RequestOptions(k=3))

    recommended, ranked = scorer.features
    expected = np.zeros((1, len(IDS), CANDIDATE_FEATURE_DIM), np.float32)
    expected[0, 5], expected[0, 6] = np.log1p(4.0), np.log1p(1.0)  # recent and newest alike
    np.testing.assert_allclose(recommended, expected, rtol=1e-6)
    np.testing.assert_allclose(ranked[0], expected[0, [6, 0, 5, 1]], rtol=1e-6)  # "nope": OOV


async def test_product_data_is_fetched_for_the_top_slice_and_widened_when_rules_drop_it() -> None:
    ids = [f"q{i:03d}" for i in range(300)]
    lists = Covisitation(np.zeros(303, np.int64), np.zeros(0, np.int32), np.zeros(0, "f4"))
    model = ServingModel(
        1, {pid: i + 2 for i, pid in enumerate(ids)}, np.zeros((302, 4), "f4"), lists
    )
    # The ranker prefers high indices; the best 100 are out of stock.
    products = {pid: _product(pid, stock=0 if i >= 200 else 3) for i, pid in enumerate(ids)}
    catalog = Catalog(products)
    asked: list[int] = []
    original = catalog.products

    async def counting(product_ids: Sequence[str], *, cached: bool) -> dict[str, Product]:
        asked.append(len(product_ids))
        return await original(product_ids, cached=cached)

    catalog.products = counting  # type: ignore[method-assign]
    service = RankingService(
        Profiles(UserState("u")),
        Retrieval([Candidate(pid, 1.0, Source.ANN) for pid in ids]),
        catalog,
        Scorer(),
        Models(model),
    )

    result = await service.recommend("u", RequestOptions(k=5))

    assert [i.product_id for i in result.items] == ["q199", "q198", "q197", "q196", "q195"]
    assert asked == [60, 60]  # the first 60, then the next 60 of the widened pool; never all 300


async def test_a_held_version_ranks_when_named_and_another_is_invalid() -> None:
    previous = ServingModel(
        2, {pid: 11 - i for i, pid in enumerate(IDS)}, MODEL.text_vectors, COVISITATION
    )
    scorer = Scorer()
    service = RankingService(
        Profiles(UserState("u")),
        Retrieval([Candidate(pid, 1.0, Source.POPULAR) for pid in IDS]),
        Catalog(PRODUCTS),
        scorer,
        Models(MODEL, previous),
    )

    named = await service.recommend("u", RequestOptions(k=3, model_version=2))
    ranked = await service.rank("u", ["p1", "p2"], RequestOptions(k=2, model_version=2))
    champion = await service.recommend("u", RequestOptions(k=3, model_version=3))
    with pytest.raises(InvalidArgument) as refused:
        await service.recommend("u", RequestOptions(k=3, model_version=4))

    # The previous version's vocabulary reverses the order, so its scores do too.
    assert [i.product_id for i in named.items] == ["p0", "p1", "p2"]
    assert [i.product_id for i in ranked.items] == ["p1", "p2"]
    assert [i.product_id for i in champion.items] == ["p9", "p8", "p7"]
    assert (named.model_version, ranked.model_version, champion.model_version) == ("2", "2", "3")
    assert [v.field for v in refused.value.violations] == ["model_version"]
    assert len(scorer.features) == 3  # the invalid request scored nothing
