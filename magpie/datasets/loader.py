"""Loads a data set into a running platform through its public gRPC APIs.

Products go through CatalogService.UpsertProducts, users through
ProfileService.UpsertProfiles and interactions through
FeedbackService.StreamEvents, in batches, with progress bars. Event ids are
deterministic (`<data set name>-<index of the interaction>`), so loading the
same data set again stores nothing twice; an interrupted load is resumed by
running it again. Every input is an iterable of batches, so a generated world
of millions of events streams through without being held in memory.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TypeVar

from tqdm import tqdm

from magpie.datasets.schema import Dataset, EventKind, Interaction, Item, User
from magpie.runtime.clients import blocking_channel
from magpie.runtime.telemetry import hashed_user
from magpie.runtime.units import (
    MAX_MESSAGE_BYTES,
    MICROS_PER_SECOND,
    NANOS_PER_SECOND,
    NANOS_PER_UNIT,
)
from magpie.v1 import (
    catalog_pb2,
    catalog_pb2_grpc,
    common_pb2,
    feedback_pb2,
    feedback_pb2_grpc,
    profiles_pb2,
    profiles_pb2_grpc,
)

__all__ = ["Addresses", "LoadReport", "Loader", "event_from", "product_from", "profile_from"]

logger = logging.getLogger(__name__)

_T = TypeVar("_T")

CATALOG_BATCH = 1000
PROFILES_BATCH = 1000
EVENTS_BATCH = 5000
CALL_TIMEOUT_SECONDS = 120.0

_EVENT_TYPES = {
    EventKind.IMPRESSION: common_pb2.EVENT_TYPE_IMPRESSION,
    EventKind.CLICK: common_pb2.EVENT_TYPE_CLICK,
    EventKind.ADD_TO_CART: common_pb2.EVENT_TYPE_ADD_TO_CART,
    EventKind.PURCHASE: common_pb2.EVENT_TYPE_PURCHASE,
    EventKind.RATING: common_pb2.EVENT_TYPE_RATING,
}
_AGE_BANDS = {
    "under_18": profiles_pb2.AGE_BAND_UNDER_18,
    "18_24": profiles_pb2.AGE_BAND_18_24,
    "25_34": profiles_pb2.AGE_BAND_25_34,
    "35_44": profiles_pb2.AGE_BAND_35_44,
    "45_54": profiles_pb2.AGE_BAND_45_54,
    "55_64": profiles_pb2.AGE_BAND_55_64,
    "65_plus": profiles_pb2.AGE_BAND_65_PLUS,
}
_GENDERS = {
    "female": profiles_pb2.GENDER_FEMALE,
    "male": profiles_pb2.GENDER_MALE,
    "other": profiles_pb2.GENDER_OTHER,
}


def product_from(item: Item) -> catalog_pb2.Product:
    nanos_total = round(item.price * NANOS_PER_UNIT)
    product = catalog_pb2.Product(
        product_id=item.item_id,
        # The catalog requires a title; MovieLens has one film without (item 267).
        title=item.title or f"Item {item.item_id}",
        description=item.description,
        category_path=item.category_path,
        tags=item.tags,
        brand=item.brand,
        price=common_pb2.Money(
            currency_code=item.currency,
            units=nanos_total // NANOS_PER_UNIT,
            nanos=nanos_total % NANOS_PER_UNIT,
        ),
        rating=item.rating,
        stock=item.stock,
        attributes=item.attributes,
        status=catalog_pb2.PRODUCT_STATUS_ACTIVE,
    )
    if item.created_at:
        product.created_at.FromNanoseconds(round(item.created_at * NANOS_PER_SECOND))
    return product


def profile_from(user: User) -> profiles_pb2.ProfileUpsert:
    return profiles_pb2.ProfileUpsert(
        user_id=user.user_id,
        attributes=profiles_pb2.UserAttributes(
            age_band=_AGE_BANDS.get(user.age_band, profiles_pb2.AGE_BAND_UNSPECIFIED),
            gender=_GENDERS.get(user.gender, profiles_pb2.GENDER_UNSPECIFIED),
            region=user.region,
            segments=user.segments,
        ),
    )


def event_from(dataset: str, index: int, interaction: Interaction) -> feedback_pb2.Event:
    event = feedback_pb2.Event(
        event_id=f"{dataset}-{index}",
        user_id=interaction.user_id,
        product_id=interaction.item_id,
        event_type=_EVENT_TYPES[interaction.kind],
        rating=interaction.rating if interaction.kind is EventKind.RATING else 0.0,
        session_id=interaction.session_id,
    )
    event.occurred_at.FromMicroseconds(round(interaction.timestamp * MICROS_PER_SECOND))
    return event


@dataclass
class LoadReport:
    products: int = 0
    users: int = 0
    events_accepted: int = 0
    events_duplicate: int = 0
    events_rejected: int = 0
    failed: int = 0
    """Products or users the services refused (each is logged)."""


@dataclass(frozen=True)
class Addresses:
    catalog: str
    profiles: str
    feedback: str


def _chunks(batches: Iterable[Sequence[_T]], size: int) -> Iterator[list[_T]]:
    """The items of `batches` again, in lists of at most `size`."""
    flat = itertools.chain.from_iterable(batches)
    while chunk := list(itertools.islice(flat, size)):
        yield chunk


class Loader:
    """Sends records to the platform; use as a context manager to close the channels."""

    def __init__(
        self, addresses: Addresses, *, progress: bool = True, token_file: str = ""
    ) -> None:
        """``token_file``: the caller's token, for a platform with authentication on."""
        options = [("grpc.max_receive_message_length", MAX_MESSAGE_BYTES)]
        self._channels = [
            blocking_channel(a, token_file, options)
            for a in (addresses.catalog, addresses.profiles, addresses.feedback)
        ]
        self._catalog = catalog_pb2_grpc.CatalogServiceStub(self._channels[0])
        self._profiles = profiles_pb2_grpc.ProfileServiceStub(self._channels[1])
        self._feedback = feedback_pb2_grpc.FeedbackServiceStub(self._channels[2])
        self._progress = progress
        self.report = LoadReport()

    def __enter__(self) -> Loader:
        return self

    def __exit__(self, *exc: object) -> None:
        for channel in self._channels:
            channel.close()

    def load(self, dataset: Dataset) -> LoadReport:
        """Products, then users, then interactions of an in-memory data set."""
        self.products([dataset.items])
        self.users([dataset.users])
        self.interactions(dataset.name, [dataset.interactions], total=len(dataset.interactions))
        return self.report

    def products(self, batches: Iterable[Sequence[Item]], total: int | None = None) -> None:
        with tqdm(total=total, unit="product", disable=not self._progress) as bar:
            for chunk in _chunks(batches, CATALOG_BATCH):
                request = catalog_pb2.UpsertProductsRequest(
                    products=[product_from(item) for item in chunk]
                )
                reply = self._catalog.UpsertProducts(request, timeout=CALL_TIMEOUT_SECONDS)
                self._count_failures([(r.id, r.ok, r.error) for r in reply.results])
                self.report.products += sum(r.ok for r in reply.results)
                bar.update(len(chunk))

    def users(self, batches: Iterable[Sequence[User]], total: int | None = None) -> None:
        with tqdm(total=total, unit="user", disable=not self._progress) as bar:
            for chunk in _chunks(batches, PROFILES_BATCH):
                request = profiles_pb2.UpsertProfilesRequest(
                    profiles=[profile_from(user) for user in chunk]
                )
                reply = self._profiles.UpsertProfiles(request, timeout=CALL_TIMEOUT_SECONDS)
                self._count_failures(  # never a raw user id in a log
                    [(f"user {hashed_user(r.user_id)}", r.ok, r.error) for r in reply.results]
                )
                self.report.users += sum(r.ok for r in reply.results)
                bar.update(len(chunk))

    def interactions(
        self, dataset: str, batches: Iterable[Sequence[Interaction]], total: int | None = None
    ) -> None:
        """Streams the interactions; event ids count interactions from 0 in input order."""
        counter = itertools.count()

        def requests() -> Iterator[feedback_pb2.StreamEventsRequest]:
            for sequence, chunk in enumerate(_chunks(batches, EVENTS_BATCH)):
                yield feedback_pb2.StreamEventsRequest(
                    sequence=sequence,
                    events=[event_from(dataset, next(counter), i) for i in chunk],
                )

        report = self.report
        with tqdm(total=total, unit="event", disable=not self._progress) as bar:
            for ack in self._feedback.StreamEvents(requests()):
                result = ack.result
                report.events_accepted += result.accepted
                report.events_duplicate += result.duplicates
                report.events_rejected += result.rejected
                for r in result.results:
                    if r.outcome == feedback_pb2.EVENT_OUTCOME_REJECTED:
                        logger.warning("event %s rejected: %s", r.event_id, r.reason)
                bar.update(len(result.results))

    def _count_failures(self, results: list[tuple[str, bool, str]]) -> None:
        for record_id, ok, error in results:
            if not ok:
                self.report.failed += 1
                logger.warning("%s refused: %s", record_id, error)
