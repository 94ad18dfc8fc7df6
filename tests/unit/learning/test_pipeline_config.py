"""Pipeline settings from JSON (`magpie train --config`): replaced field by field, strictly."""

from __future__ import annotations

from typing import Any

import pytest

from magpie.learning.train import PipelineConfig, pipeline_config


def test_nested_values_replace_only_what_they_name() -> None:
    config = pipeline_config({"ranker": {"epochs": 2, "max_seconds": 5}, "use_text": False})

    assert config.ranker.epochs == 2
    assert config.ranker.max_seconds == 5.0 and isinstance(config.ranker.max_seconds, float)
    assert not config.use_text
    assert config.retrieval == PipelineConfig().retrieval
    assert config.ranker.dim == PipelineConfig().ranker.dim


@pytest.mark.parametrize(
    ("values", "named"),
    [
        ({"rankr": {}}, "rankr: no such setting"),
        ({"ranker": {"epoch": 1}}, "ranker.epoch: no such setting"),
        ({"ranker": {"epochs": 1.5}}, "ranker.epochs: expected an integer"),
        ({"ranker": {"epochs": True}}, "ranker.epochs: expected a number"),
        ({"use_text": 1}, "use_text: expected bool"),
        ({"retrieval": 3}, "retrieval: expected an object"),
        ({"text": {"encoder": 7}}, "text.encoder: expected str"),
    ],
)
def test_unknown_keys_and_wrong_types_are_refused(values: dict[str, Any], named: str) -> None:
    with pytest.raises(ValueError) as refused:
        pipeline_config(values)

    assert named in str(refused.value)
