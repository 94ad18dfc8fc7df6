import numpy as np

from magpie.contract.covisitation import (
    FEATURE_DECAY,
    FEATURE_RECENT,
    SEQUENCE_TAIL,
    Covisitation,
    covisitation_matrix,
)
from magpie.contract.signature import CANDIDATE_FEATURE_DIM, PAD_INDEX


def _neighbours(lists: Covisitation, item: int) -> list[int]:
    return lists.indices[lists.indptr[item] : lists.indptr[item + 1]].tolist()


def test_lists_keep_best_neighbours_without_self() -> None:
    lists = Covisitation.from_sequences([[2, 3, 4], [2, 3], [3, 2, 5], [4, 4]], 6, neighbours=2)
    assert _neighbours(lists, 2) == [3, 5]  # 3 is next to 2 three times, 5 once, 4 two steps away
    assert _neighbours(lists, 4) == [3, 2]  # the repeated 4 is not its own neighbour
    assert _neighbours(lists, 0) == _neighbours(lists, 1) == []
    assert (lists.scores > 0).all()
    assert lists.scores[lists.indptr[2]] > lists.scores[lists.indptr[2] + 1]


def test_features_sum_decayed_scores_of_the_recent_history() -> None:
    rng = np.random.default_rng(0)
    sequences = [rng.integers(2, 40, 30).tolist() for _ in range(50)]
    lists = Covisitation.from_sequences(sequences, 40, neighbours=10)
    score = {
        (item, int(n)): float(s)
        for item in range(40)
        for n, s in zip(
            _neighbours(lists, item),
            lists.scores[lists.indptr[item] : lists.indptr[item + 1]],
            strict=True,
        )
    }
    history = np.full((2, 30), PAD_INDEX, dtype=np.int64)
    history[0] = rng.integers(2, 40, 30)
    history[1, -3:] = [5, 6, 7]
    candidates = rng.integers(0, 40, (2, 25))
    features = lists.features(history, candidates)
    assert features.shape == (2, 25, CANDIDATE_FEATURE_DIM) and features.dtype == np.float32
    for row in range(2):
        recent = history[row, -FEATURE_RECENT:]
        for column, candidate in enumerate(candidates[row]):
            expected = sum(
                FEATURE_DECAY ** (len(recent) - 1 - i) * score.get((int(item), int(candidate)), 0.0)
                for i, item in enumerate(recent)
            )
            newest = score.get((int(recent[-1]), int(candidate)), 0.0)
            np.testing.assert_allclose(
                features[row, column], np.log1p([expected, newest]), rtol=1e-5, atol=1e-6
            )


def test_features_of_unknown_rows_are_zero() -> None:
    lists = Covisitation.from_sequences([[2, 3], [3, 2]], 4)
    history = np.array([[PAD_INDEX, 99, -1]])
    assert not lists.features(history, np.array([[2, 3, 123]])).any()
    assert lists.features(np.array([[2]]), np.array([[3, 99]]))[0, 1].tolist() == [0.0, 0.0]


def test_lists_are_the_top_entries_of_the_dense_matrix() -> None:
    rng = np.random.default_rng(1)
    sequences = [rng.integers(2, 60, rng.integers(1, 40)).tolist() for _ in range(80)]
    lists = Covisitation.from_sequences(sequences, 60, neighbours=7)
    matrix = covisitation_matrix([s[-SEQUENCE_TAIL:] for s in sequences], 60)
    np.fill_diagonal(matrix, 0.0)
    for item in range(60):
        kept = _neighbours(lists, item)
        scores = lists.scores[lists.indptr[item] : lists.indptr[item + 1]]
        assert len(kept) == min(7, int((matrix[item] > 0).sum()))
        np.testing.assert_allclose(scores, matrix[item, kept], rtol=1e-6)
        assert (np.diff(scores) <= 0).all()
        rest = np.delete(matrix[item], kept)
        assert not kept or rest.max() <= scores[-1] * (1 + 1e-6)
