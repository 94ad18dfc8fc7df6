"""Recommend against real gRPC dependencies that misbehave: the ranking servicer and its
real downstream clients (channels, breakers, RankerClient) on free ports, with a small
retrieval server (retrieval's own validators in front) and a small Triton server
(Triton's gRPC protocol) whose answers each test chooses. Profiles and catalog are
in-process fakes: their clients go through the same code as retrieval's."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator, Awaitable, Sequence
from dataclasses import dataclass, field
from functools import partial

import grpc
import numpy as np
import pytest
from tritonclient.grpc import service_pb2, service_pb2_grpc

from magpie.contract.covisitation import Covisitation
from magpie.contract.signature import (
    CANDIDATE_FEATURE_DIM,
    CANDIDATE_IDS,
    CONTEXT_DIM,
    HISTORY_LEN,
    SCORES,
)
from magpie.modelstore.client import RankerClient
from magpie.runtime.breaker import DependencyDown
from magpie.runtime.clients import open_channel
from magpie.runtime.deadline import set_deadline_from
from magpie.runtime.errors import (
    DeadlineExceeded,
    FieldViolation,
    InvalidArgument,
    Unavailable,
)
from magpie.runtime.filters import MAX_FILTER_VALUES, ProductFilter
from magpie.runtime.server import RunningServer, ServiceSpec, start_server
from magpie.runtime.settings import Settings
from magpie.v1 import common_pb2, ranking_pb2, ranking_pb2_grpc, retrieval_pb2, retrieval_pb2_grpc
from services.ranking import config
from services.ranking.domain import Candidate, Product, Source, UserState
from services.ranking.downstream import GuardedRanker, RetrievalClient, _candidates
from services.ranking.model import ServingModel
from services.ranking.service import RankingService
from services.ranking.servicer import VALIDATORS as RANKING_VALIDATORS
from services.ranking.servicer import RankingServicer
from services.retrieval.servicer import VALIDATORS as RETRIEVAL_VALIDATORS
from tests.support import field_violations

IDS = [f"p{i}" for i in range(10)]
"""Retrieval proposes them in this order; the healthy ranker reverses it."""
K = 3
DEADLINE_SECONDS = 1.0
"""What the caller gives Recommend while its dependencies are out (as in the e2e tests)."""
SLOW_SECONDS = 5.0
"""How long a hung dependency takes: far past every budget."""
REFUSED_BRAND = "refused"
ROOMY_SECONDS = 1.0
"""Each hop's budget in the tests that are not about time (see the ``budget`` fixture)."""
CALLER_SECONDS = 5.0
"""The caller's deadline in those tests: longer than the hops', which stay the bound."""
MODEL = ServingModel(
    3,
    {pid: i + 2 for i, pid in enumerate(IDS)},
    np.eye(12, 4, dtype=np.float32),
    Covisitation(np.zeros(13, np.int64), np.zeros(0, np.int32), np.zeros(0, np.float32)),
)
PURCHASED = frozenset(f"bought{i}" for i in range(300))


class Profiles:
    async def get(self, user_id: str) -> UserState:
        return UserState(user_id, purchased=PURCHASED)


class Catalog:
    async def products(self, product_ids: Sequence[str], *, cached: bool) -> dict[str, Product]:
        return {p: Product(p, p, ("Cat",), "b", "EUR", 1, 3, True, 0.0) for p in product_ids}


PREVIOUS = dataclasses.replace(MODEL, version=2)
"""The version before MODEL, held beside it (its vocabulary is the same)."""


class Models:
    current = MODEL

    def held(self, version: int) -> ServingModel | None:
        return {m.version: m for m in (MODEL, PREVIOUS)}.get(version)


@dataclass
class FakeRetrieval(retrieval_pb2_grpc.RetrievalServiceServicer):
    """Answers IDS as popular candidates; refuses a filter on ``REFUSED_BRAND``."""

    slow: bool = False
    requests: list[retrieval_pb2.RetrieveRequest] = field(default_factory=list)

    async def Retrieve(
        self, request: retrieval_pb2.RetrieveRequest, context: grpc.aio.ServicerContext
    ) -> retrieval_pb2.RetrieveResponse:
        self.requests.append(request)
        if REFUSED_BRAND in request.filter.brands:
            raise InvalidArgument([FieldViolation("filter.brands[0]", "no such brand")])
        if self.slow:
            await asyncio.sleep(SLOW_SECONDS)
        popular = common_pb2.CANDIDATE_SOURCE_POPULAR
        return retrieval_pb2.RetrieveResponse(
            candidates=[
                retrieval_pb2.Candidate(product_id=p, score=10.0 - i, source=popular)
                for i, p in enumerate(IDS)
            ],
            model_version="7",
        )


@dataclass
class FakeTriton(service_pb2_grpc.GRPCInferenceServiceServicer):
    """Scores each candidate by its vocabulary row (so the ranker reverses retrieval's
    order), or answers what ``answer`` names: a broken or a hung ranker."""

    answer: str = "ok"
    calls: int = 0
    queue_timeouts: list[int] = field(default_factory=list)
    """Each request's own queue timeout, microseconds."""
    versions: list[str] = field(default_factory=list)
    """The model version each request named."""

    async def ModelInfer(
        self, request: service_pb2.ModelInferRequest, context: grpc.aio.ServicerContext
    ) -> service_pb2.ModelInferResponse:
        self.calls += 1
        self.queue_timeouts.append(request.parameters["timeout"].int64_param)
        self.versions.append(request.model_version)
        if self.answer == "slow":
            await asyncio.sleep(SLOW_SECONDS)
        names = [tensor.name for tensor in request.inputs]
        tensor = request.inputs[names.index(CANDIDATE_IDS)]
        ids = np.frombuffer(request.raw_input_contents[names.index(CANDIDATE_IDS)], np.int64)
        scores = ids.reshape(list(tensor.shape)).astype(np.float32)
        if self.answer == "empty":
            scores = scores[:, :0]
        elif self.answer == "short":
            scores = scores[:, :5]
        elif self.answer in ("nan", "inf"):
            scores[0, 1] = float(self.answer)
        outputs = [] if self.answer == "missing" else [(scores, "FP32")]
        if self.answer == "integers":
            outputs = [(scores.astype(np.int32), "INT32")]
        return service_pb2.ModelInferResponse(
            model_name=request.model_name,
            model_version=request.model_version,
            outputs=[
                service_pb2.ModelInferResponse.InferOutputTensor(
                    name=SCORES, datatype=datatype, shape=list(array.shape)
                )
                for array, datatype in outputs
            ],
            raw_output_contents=[array.tobytes() for array, _ in outputs],
        )


@dataclass
class Stack:
    ranking: ranking_pb2_grpc.RankingServiceStub
    retrieval: FakeRetrieval
    triton: FakeTriton
    retrieval_server: RunningServer
    triton_server: grpc.aio.Server
    retrieval_client: RetrievalClient
    ranker: GuardedRanker
    """The ranking service's own clients (and breakers)."""

    async def recommend(
        self,
        timeout: float = CALLER_SECONDS,
        exclude: Sequence[str] = (),
        brands: Sequence[str] = (),
        model_version: str = "",
    ) -> tuple[ranking_pb2.RecommendResponse, float]:
        started = time.monotonic()
        request_filter = common_pb2.ProductFilter(exclude_product_ids=exclude, brands=brands)
        reply = await self.ranking.Recommend(
            ranking_pb2.RecommendRequest(
                user_id="u1", k=K, filter=request_filter, model_version=model_version
            ),
            timeout=timeout,
        )
        return reply, time.monotonic() - started


def _items(reply: ranking_pb2.RecommendResponse) -> list[str]:
    return [item.product_id for item in reply.items]


@pytest.fixture
def budget(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> float:
    """The hops' time budgets: the real ones when a test asks for "real" (indirect
    parametrization), else ``ROOMY_SECONDS`` each, so that a loaded machine cannot turn a
    test that is not about time into a timeout. Returns the Triton client's budget."""
    if getattr(request, "param", "roomy") == "real":
        return Settings().triton_timeout_seconds
    for name in ("PROFILE_TIMEOUT_SECONDS", "RETRIEVAL_TIMEOUT_SECONDS", "CATALOG_TIMEOUT_SECONDS"):
        monkeypatch.setattr(config, name, ROOMY_SECONDS)
    return ROOMY_SECONDS


@pytest.fixture
async def stack(budget: float) -> AsyncIterator[Stack]:
    settings = Settings(port=0, health_probe_seconds=60.0)
    retrieval = FakeRetrieval()
    retrieval_server = await start_server(
        ServiceSpec(
            name="retrieval",
            service_names=[retrieval_pb2.DESCRIPTOR.services_by_name["RetrievalService"].full_name],
            register=lambda s: retrieval_pb2_grpc.add_RetrievalServiceServicer_to_server(
                retrieval, s
            ),
            validators=RETRIEVAL_VALIDATORS,
        ),
        settings,
    )
    triton = FakeTriton()
    triton_server = grpc.aio.server()
    service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(triton, triton_server)
    triton_port = triton_server.add_insecure_port("127.0.0.1:0")
    await triton_server.start()

    channel = open_channel(retrieval_server.address, settings)
    ranker = RankerClient(f"127.0.0.1:{triton_port}", settings.triton_model, budget)
    retrieval_client, guarded = RetrievalClient(channel), GuardedRanker(ranker)
    service = RankingService(Profiles(), retrieval_client, Catalog(), guarded, Models())
    ranking_server = await start_server(
        ServiceSpec(
            name="ranking",
            service_names=[ranking_pb2.DESCRIPTOR.services_by_name["RankingService"].full_name],
            register=lambda s: ranking_pb2_grpc.add_RankingServiceServicer_to_server(
                RankingServicer(service), s
            ),
            validators=RANKING_VALIDATORS,
        ),
        settings,
    )
    async with grpc.aio.insecure_channel(ranking_server.address) as caller:
        stack = Stack(
            ranking_pb2_grpc.RankingServiceStub(caller),
            retrieval,
            triton,
            retrieval_server,
            triton_server,
            retrieval_client,
            guarded,
        )
        await stack.recommend()  # connects every channel; remembers the popular fallback
        retrieval.requests.clear()
        triton.calls, triton.queue_timeouts, triton.versions = 0, [], []
        yield stack
    await ranking_server.stop(0)
    await ranker.close()
    await channel.close()
    await triton_server.stop(0)
    await retrieval_server.stop(0)


async def test_healthy_dependencies_answer_in_the_rankers_order(
    stack: Stack, budget: float
) -> None:
    reply, _ = await stack.recommend()

    assert _items(reply) == ["p9", "p8", "p7"]
    assert not reply.degradations and reply.model_version == "3"
    # Triton's queue drops the request once its caller would no longer wait for it.
    (queue_timeout,) = stack.triton.queue_timeouts
    assert 0 < queue_timeout <= budget * 1e6


async def test_a_held_version_named_by_the_caller_ranks_and_is_answered(stack: Stack) -> None:
    named, _ = await stack.recommend(model_version="2")
    champion, _ = await stack.recommend()

    assert (named.model_version, champion.model_version) == ("2", "3")
    assert not named.degradations
    assert _items(named) == _items(champion)
    assert stack.triton.versions == ["2", "3"]  # Triton scored with the version named


@pytest.mark.parametrize("version", ["4", "0", "x", "-2", "1234567890", "٣"])
async def test_a_version_not_held_or_malformed_is_invalid_before_any_work(
    stack: Stack, version: str
) -> None:
    with pytest.raises(grpc.RpcError) as refused:
        await stack.recommend(model_version=version)

    assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert field_violations(refused.value) == ["model_version"]
    assert stack.retrieval.requests == [] and stack.triton.calls == 0


async def test_exclusions_and_purchases_are_cut_to_what_retrieval_accepts(stack: Stack) -> None:
    """The caller may exclude as many products as retrieval accepts; the user's purchases
    fill what room is left (the business rules drop any others later)."""
    excluded = [f"x{i}" for i in range(MAX_FILTER_VALUES - 100)]

    reply, _ = await stack.recommend(exclude=excluded)
    few, _ = await stack.recommend(exclude=excluded[:10])

    assert not reply.degradations and not few.degradations
    sent, sent_few = (list(r.filter.exclude_product_ids) for r in stack.retrieval.requests)
    assert len(sent) == MAX_FILTER_VALUES
    assert sent[: len(excluded)] == excluded
    assert set(sent[len(excluded) :]) < PURCHASED
    assert sent_few[:10] == excluded[:10] and set(sent_few[10:]) == PURCHASED


async def test_requests_retrieval_refuses_are_the_callers_error_and_open_no_breaker(
    stack: Stack,
) -> None:
    for _ in range(config.BREAKER_FAILURES + 1):
        with pytest.raises(grpc.RpcError) as refused:
            await stack.recommend(brands=[REFUSED_BRAND])
        assert field_violations(refused.value) == ["filter.brands[0]"]

    reply, _ = await stack.recommend()

    assert not reply.degradations  # retrieval's breaker stayed closed for everyone else
    assert len(stack.retrieval.requests) == config.BREAKER_FAILURES + 2


async def _with_deadline(seconds: float, call: Awaitable[object]) -> None:
    """``call`` as a ranking handler runs it: with the caller's deadline ``seconds`` away
    (in a task of its own, which keeps that deadline)."""

    async def handler() -> None:
        set_deadline_from(seconds)
        await call

    await asyncio.create_task(handler())


@pytest.mark.parametrize("slow", ["retrieval", "triton"])
async def test_callers_deadlines_shorter_than_a_hop_open_no_breaker(
    stack: Stack, budget: float, slow: str
) -> None:
    """Calls that time out because the *caller* gave too little time say nothing about the
    dependency: only a timeout of the hop's own budget counts."""
    stack.retrieval.slow = slow == "retrieval"
    stack.triton.answer = "slow" if slow == "triton" else "ok"
    caller_seconds = budget / 4
    if slow == "retrieval":
        call = partial(stack.retrieval_client.retrieve, UserState("u1"), K, ProductFilter())
    else:
        ids = np.arange(2, 12, dtype=np.int64)[None]
        history = np.zeros((1, HISTORY_LEN), np.int64)
        features = np.zeros((1, 10, CANDIDATE_FEATURE_DIM), np.float32)
        context = np.zeros((1, CONTEXT_DIM), np.float32)
        call = partial(stack.ranker.score, MODEL, history, ids, context, features)
    for _ in range(config.BREAKER_FAILURES + 1):
        with pytest.raises((DeadlineExceeded, Unavailable)):  # what counts is the breaker
            await _with_deadline(caller_seconds, call())
    stack.retrieval.slow, stack.triton.answer = False, "ok"

    reply, _ = await stack.recommend()

    assert not reply.degradations, reply.degradations  # both breakers stayed closed
    assert _items(reply) == ["p9", "p8", "p7"]


@pytest.mark.parametrize("answer", ["missing", "empty", "short", "nan", "inf", "integers"])
async def test_a_ranker_answer_that_is_not_a_score_per_candidate_degrades(
    stack: Stack, answer: str
) -> None:
    stack.triton.answer = answer

    reply, _ = await stack.recommend()

    assert list(reply.degradations) == [ranking_pb2.DEGRADATION_RANKER_UNAVAILABLE]
    assert _items(reply) == ["p0", "p1", "p2"]  # retrieval's order
    assert reply.model_version == "7"


@pytest.mark.parametrize("budget", ["real"], indirect=True)
@pytest.mark.parametrize("fault", ["hung", "gone"])
async def test_recommend_answers_within_its_deadline_while_retrieval_and_triton_are_out(
    stack: Stack, fault: str
) -> None:
    """Both at once, the worst case for the deadline: each hop's budget bounds it, and once
    a breaker opened the hop costs nothing."""
    if fault == "hung":
        stack.retrieval.slow, stack.triton.answer = True, "slow"
    else:
        await stack.retrieval_server.stop(0)
        await stack.triton_server.stop(0)
    retrieved, scored = len(stack.retrieval.requests), stack.triton.calls

    answers = [
        await stack.recommend(timeout=DEADLINE_SECONDS) for _ in range(config.BREAKER_FAILURES + 3)
    ]

    for reply, seconds in answers:
        assert set(reply.degradations) == {
            ranking_pb2.DEGRADATION_RETRIEVAL_UNAVAILABLE,
            ranking_pb2.DEGRADATION_RANKER_UNAVAILABLE,
        }
        assert len(reply.items) == K
        assert seconds < DEADLINE_SECONDS, seconds
    if fault == "hung":  # the hops' own budgets ran out: both breakers opened
        assert len(stack.retrieval.requests) - retrieved == config.BREAKER_FAILURES
        assert stack.triton.calls - scored == config.BREAKER_FAILURES


def test_retrieval_candidates_convert_in_order_with_unknown_sources_unspecified() -> None:
    reply = retrieval_pb2.RetrieveResponse(
        candidates=[
            retrieval_pb2.Candidate(
                product_id="a",
                score=2.0,
                source=common_pb2.CANDIDATE_SOURCE_POPULAR,
                anchor_product_id="x",
            ),
            retrieval_pb2.Candidate(product_id="b", score=1.0, source=99),  # type: ignore[arg-type]
        ]
    )

    assert _candidates(reply) == [
        Candidate("a", 2.0, Source.POPULAR, "x"),
        Candidate("b", 1.0, Source.UNSPECIFIED, ""),
    ]
    assert all(type(c) is Candidate for c in _candidates(reply))
    assert _candidates(retrieval_pb2.RetrieveResponse()) == []


def test_retrieval_columns_convert_as_the_messages_do() -> None:
    columns = retrieval_pb2.CandidateColumns(
        product_ids=["a", "b"],
        scores=[2.0, 1.0],
        sources=[common_pb2.CANDIDATE_SOURCE_POPULAR, 99],  # type: ignore[list-item]
        anchor_product_ids=["x", ""],
    )
    reply = retrieval_pb2.RetrieveResponse(columns=columns)

    assert _candidates(reply) == [
        Candidate("a", 2.0, Source.POPULAR, "x"),
        Candidate("b", 1.0, Source.UNSPECIFIED, ""),
    ]
    assert all(type(c) is Candidate for c in _candidates(reply))
    empty = retrieval_pb2.RetrieveResponse(columns=retrieval_pb2.CandidateColumns())
    assert _candidates(empty) == []


def test_retrieval_columns_of_different_lengths_are_the_dependency_s_fault() -> None:
    columns = retrieval_pb2.CandidateColumns(
        product_ids=["a", "b"], scores=[2.0], sources=[1, 1], anchor_product_ids=["", ""]
    )

    with pytest.raises(DependencyDown, match="different lengths"):
        _candidates(retrieval_pb2.RetrieveResponse(columns=columns))
