from magpie.datasets.schema import Dataset, EventKind, Interaction, Item, User
from magpie.learning.protocol import LeaveOneOut, leave_one_out, stage_inputs
from magpie.learning.sequences import build_vocab
from magpie.learning.train import training_sequences


def _event(user: str, item: str, at: float) -> Interaction:
    return Interaction(user, item, EventKind.RATING, at)


def test_ties_keep_file_order_and_last_two_are_test_and_valid() -> None:
    items = [Item(f"i{n}", "t", "d", ("c",)) for n in range(5)]
    events = [
        _event("u", "i3", 5.0),
        _event("u", "i1", 1.0),
        _event("u", "i4", 5.0),
        _event("u", "i2", 1.0),
        _event("u", "i0", 3.0),
    ]
    vocab = build_vocab(items)
    split = leave_one_out(Dataset("d", items, [User("u")], events), vocab)
    (user,) = split.users
    assert [vocab.item_ids[i - 2] for i in user.items] == ["i1", "i2", "i0", "i3", "i4"]
    assert user.test == vocab.index("i4")
    assert user.valid == vocab.index("i3")
    assert user.train == tuple(vocab.index(i) for i in ("i1", "i2", "i0"))


def test_test_and_validation_items_never_reach_training(split: LeaveOneOut) -> None:
    data = training_sequences(split, max_len=50)
    for row, user in enumerate(split.users):
        seen = set(data.inputs[row].tolist()) | set(data.targets[row].tolist())
        seen.discard(0)
        assert seen == set(user.train)
        assert user.test not in seen
        assert user.valid not in seen


def test_stage_histories_end_right_before_the_target(split: LeaveOneOut) -> None:
    test = stage_inputs(split, "test", max_len=50)
    valid = stage_inputs(split, "valid", max_len=50)
    for row, user in enumerate(split.users):
        assert test.histories[row] == user.items[:-1]
        assert valid.histories[row] == user.train
        assert test.history_ids[row, -1] == user.valid
        assert test.targets[row] == user.test


def test_short_users_are_training_only() -> None:
    items = [Item(f"i{n}", "t", "d", ("c",)) for n in range(3)]
    events = [_event("a", "i0", 1.0), _event("a", "i1", 2.0)]
    split = leave_one_out(Dataset("d", items, [User("a")], events), build_vocab(items))
    assert split.users == ()
    assert [s for s, _ in split.train_sequences()] == [(2, 3)]
