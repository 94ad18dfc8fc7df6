import pytest

from magpie.datasets.movielens import _item, _user, load_movielens_100k, parse_atomic
from magpie.datasets.schema import EventKind


def test_parse_atomic_drops_field_types() -> None:
    rows = parse_atomic("item_id:token\tmovie_title:token_seq\n1\tToy Story\n")
    assert rows == [{"item_id": "1", "movie_title": "Toy Story"}]


def test_items_and_users_are_mapped() -> None:
    item = _item(
        {
            "item_id": "1",
            "movie_title": "Toy Story",
            "release_year": "1995",
            "class": "Animation Comedy",
        }
    )
    assert item.category_path == ("Movies", "Animation")
    assert item.tags == ("Animation", "Comedy")
    assert item.attributes == {"year": "1995"}
    assert "1995" in item.description
    assert "Animation, Comedy" in item.description
    user = _user(
        {"user_id": "7", "age": "24", "gender": "F", "occupation": "writer", "zip_code": "1"}
    )
    assert (user.age_band, user.gender) == ("18_24", "female")


@pytest.mark.slow
def test_full_data_set_loads() -> None:
    dataset = load_movielens_100k()
    assert (len(dataset.items), len(dataset.users), len(dataset.interactions)) == (
        1682,
        943,
        100000,
    )
    assert dataset.interactions[0].kind is EventKind.RATING
    assert dataset.interactions[0].user_id == "196"
