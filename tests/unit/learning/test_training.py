from dataclasses import replace

import numpy as np
import torch

from magpie.learning.baselines import BPRConfig, covisitation_matrix, covisitation_scores
from magpie.learning.protocol import LeaveOneOut, stage_inputs
from magpie.learning.ranker_model import RankerConfig
from magpie.learning.retrieval_model import RetrievalConfig
from magpie.learning.train import train_bpr, train_ranker, train_retrieval

TINY_RETRIEVAL = RetrievalConfig(
    dim=16, layers=1, heads=2, max_len=12, epochs=3, batch_size=8, eval_every=1, patience=5
)
TINY_RANKER = RankerConfig(
    dim=16,
    layers=1,
    heads=2,
    max_len=12,
    hidden=32,
    positions=2,
    negative_pool=10,
    negatives=5,
    epochs=2,
    batch_size=8,
    eval_every=1,
    patience=5,
)


def _state(model: torch.nn.Module) -> dict[str, np.ndarray]:
    return {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}


def test_retrieval_training_is_deterministic_per_seed(
    split: LeaveOneOut, text_table: np.ndarray
) -> None:
    first, _ = train_retrieval(split, text_table, TINY_RETRIEVAL, seed=3)
    second, _ = train_retrieval(split, text_table, TINY_RETRIEVAL, seed=3)
    other, _ = train_retrieval(split, text_table, TINY_RETRIEVAL, seed=4)
    histories = stage_inputs(split, "test", TINY_RETRIEVAL.max_len).history_ids
    a, b, c = _state(first), _state(second), _state(other)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert np.array_equal(first.score_all(histories), second.score_all(histories))
    assert not np.array_equal(a["items.ids.weight"], c["items.ids.weight"])


def test_retrieval_learns_the_sequential_pattern(split: LeaveOneOut) -> None:
    config = replace(TINY_RETRIEVAL, epochs=30, eval_every=30, dropout=0.0, lr=1e-2)
    model, _ = train_retrieval(split, None, config, seed=0)
    test = stage_inputs(split, "test", config.max_len)
    scores = model.score_all(test.history_ids)
    hits = (np.argsort(-scores, axis=1)[:, :5] == test.targets[:, None]).any(axis=1)
    assert hits.mean() > 0.5


def test_ranker_training_is_deterministic_per_seed(
    split: LeaveOneOut, text_table: np.ndarray
) -> None:
    retrieval, _ = train_retrieval(split, text_table, TINY_RETRIEVAL, seed=0)
    first, lists, _ = train_ranker(split, text_table, retrieval, TINY_RANKER, 10, seed=1)
    second, same_lists, _ = train_ranker(split, text_table, retrieval, TINY_RANKER, 10, seed=1)
    a, b = _state(first), _state(second)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert all(
        np.array_equal(x, y)
        for x, y in zip(lists.arrays().values(), same_lists.arrays().values(), strict=True)
    )
    history = stage_inputs(split, "test", TINY_RANKER.max_len).history_ids[:4]
    candidates = np.tile(np.arange(2, 12), (4, 1))
    features = torch.from_numpy(lists.features(history, candidates))
    inputs = (torch.from_numpy(history), torch.from_numpy(candidates), torch.zeros(4, 8), features)
    with torch.no_grad():
        assert torch.equal(first(*inputs), second(*inputs))


def test_bpr_is_deterministic_per_seed(split: LeaveOneOut) -> None:
    config = BPRConfig(dim=8, epochs=2, batch_size=64, eval_every=1)
    first, _ = train_bpr(split, config, seed=0)
    second, _ = train_bpr(split, config, seed=0)
    assert np.array_equal(first.score_all(5), second.score_all(5))


def test_covisitation_scores_neighbours_of_recent_items() -> None:
    matrix = covisitation_matrix([(2, 3, 4), (2, 3)], vocab_size=6, window=1)
    assert matrix[2, 3] == 2 / np.sqrt(2)
    assert matrix[2, 4] == 0.0
    scores = covisitation_scores(matrix, [(4,)])
    assert scores[0].argmax() == 3


def test_weight_average_is_the_mean_of_float_entries_and_keeps_the_latest_others() -> None:
    from magpie.learning.train import _WeightAverage

    average = _WeightAverage()
    for step in (1.0, 2.0, 6.0):
        average.add({"weight": torch.full((2,), step), "index": torch.tensor([int(step)])})
    assert average.count == 3 and average.state is not None
    assert torch.allclose(average.state["weight"], torch.full((2,), 3.0))
    assert average.state["index"].tolist() == [6]


def test_fit_with_average_tail_ends_on_the_mean_of_the_tail_checkpoints() -> None:
    from magpie.learning.train import _fit

    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1)
    seen: list[torch.Tensor] = []  # the weights at each validation, in order

    def losses():  # type: ignore[no-untyped-def]
        yield (model(torch.randn(8, 3)) - 1.0).pow(2).mean()

    def validate() -> float:
        seen.append(model.weight.detach().clone())
        return 0.0

    schedule = replace(BPRConfig(), epochs=4, eval_every=1, lr=0.1, average_tail=0.5)
    _fit("tiny", model, schedule, losses, validate)

    # Validations: the start, after epochs 1-4, then the averaged result; the tail is
    # epochs 2-4 and early stopping (no gain, patience 3) must not cut it short.
    assert len(seen) == 6
    assert not torch.allclose(seen[2], seen[4])
    assert torch.allclose(model.weight, torch.stack(seen[2:5]).mean(0), atol=1e-6)
    assert torch.equal(seen[5], model.weight.detach())
