"""MovieLens-100k, read out of the RecBole 1.2.1 wheel.

The wheel carries the data set as RecBole atomic files (tab-separated, header
``field:type``). We download the wheel once with pip into a cache directory
(``$MAGPIE_DATA_DIR`` or ``~/.cache/magpie``) and read the files straight from
the zip; RecBole itself is never installed. The license forbids redistribution,
so the files never enter the repository. The wheel's SHA-256 is recorded here and checked
before anything is read out of it, cached or just downloaded: a wheel that differs (a
tampered index or cache) is refused.
"""

from __future__ import annotations

import hashlib
import logging
import os
import subprocess
import sys
import zipfile
from pathlib import Path

from magpie.datasets.schema import Dataset, EventKind, Interaction, Item, User

__all__ = [
    "RECBOLE_SHA256",
    "RECBOLE_VERSION",
    "WheelHashMismatch",
    "data_dir",
    "load_movielens_100k",
    "parse_atomic",
    "wheel_path",
]

logger = logging.getLogger(__name__)

RECBOLE_VERSION = "1.2.1"
RECBOLE_SHA256 = "9c9948202011f37eb0a7c6768129313f00d6403ad221ec940d5e2d5d5f33a407"
"""SHA-256 of recbole-1.2.1-py3-none-any.whl as PyPI serves it."""
_MEMBER = "recbole/dataset_example/ml-100k/ml-100k.{}"
_AGE_BANDS = ((18, "under_18"), (25, "18_24"), (35, "25_34"), (45, "35_44"), (55, "45_54"))
_GENDERS = {"M": "male", "F": "female"}


def data_dir() -> Path:
    """The cache directory for downloaded data: ``$MAGPIE_DATA_DIR`` or ``~/.cache/magpie``."""
    return Path(os.environ.get("MAGPIE_DATA_DIR") or Path.home() / ".cache" / "magpie")


class WheelHashMismatch(RuntimeError):
    """The RecBole wheel is not the one whose SHA-256 is recorded: nothing is read from it."""


def _verify(wheel: Path) -> None:
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    if digest != RECBOLE_SHA256:
        raise WheelHashMismatch(
            f"{wheel} has SHA-256 {digest}, but recbole=={RECBOLE_VERSION} has "
            f"{RECBOLE_SHA256}: refusing to read it (delete the file to download it again)"
        )


def wheel_path(cache_dir: Path | None = None) -> Path:
    """The RecBole wheel in the cache, downloaded with pip when it is not there yet, and
    checked against :data:`RECBOLE_SHA256` (:class:`WheelHashMismatch` when it differs)."""
    directory = cache_dir or data_dir()
    wheel = directory / f"recbole-{RECBOLE_VERSION}-py3-none-any.whl"
    if not wheel.exists():
        directory.mkdir(parents=True, exist_ok=True)
        logger.info("downloading recbole==%s into %s", RECBOLE_VERSION, directory)
        subprocess.run(
            [
                *(sys.executable, "-m", "pip", "download", "--no-deps", "--quiet"),
                *(f"recbole=={RECBOLE_VERSION}", "-d", str(directory)),
            ],
            check=True,
        )
    _verify(wheel)
    return wheel


def parse_atomic(text: str) -> list[dict[str, str]]:
    """Rows of a RecBole atomic file keyed by field name (the ``:type`` suffix dropped)."""
    lines = text.splitlines()
    fields = [column.split(":", 1)[0] for column in lines[0].split("\t")]
    return [dict(zip(fields, line.split("\t"), strict=True)) for line in lines[1:] if line]


def _age_band(age: int) -> str:
    for upper, band in _AGE_BANDS:
        if age < upper:
            return band
    return "55_64" if age < 65 else "65_plus"


def _item(row: dict[str, str]) -> Item:
    genres = tuple(g for g in row["class"].split() if g != "unknown")
    year = row["release_year"] if row["release_year"].isdigit() else ""
    title = row["movie_title"] if row["movie_title"] != "unkonwn" else ""
    genre_text = ", ".join(genres) if genres else "uncategorised"
    description = f"{title} ({year or 'year unknown'}). A {genre_text} movie."
    return Item(
        item_id=row["item_id"],
        title=title,
        description=description,
        category_path=("Movies", genres[0]) if genres else ("Movies",),
        tags=genres,
        attributes={"year": year} if year else {},
    )


def _user(row: dict[str, str]) -> User:
    return User(
        user_id=row["user_id"],
        age_band=_age_band(int(row["age"])),
        gender=_GENDERS.get(row["gender"], "other"),
        region=row["zip_code"],
        segments=(f"occupation:{row['occupation']}",),
    )


def _interaction(row: dict[str, str]) -> Interaction:
    return Interaction(
        user_id=row["user_id"],
        item_id=row["item_id"],
        kind=EventKind.RATING,
        timestamp=float(row["timestamp"]),
        rating=float(row["rating"]),
    )


def load_movielens_100k(cache_dir: Path | None = None) -> Dataset:
    """MovieLens-100k as a :class:`Dataset`; interactions keep the file's row order."""
    with zipfile.ZipFile(wheel_path(cache_dir)) as archive:

        def rows(kind: str) -> list[dict[str, str]]:
            return parse_atomic(archive.read(_MEMBER.format(kind)).decode("utf-8"))

        return Dataset(
            name="ml-100k",
            items=[_item(row) for row in rows("item")],
            users=[_user(row) for row in rows("user")],
            interactions=[_interaction(row) for row in rows("inter")],
        )
