"""A paper session's config: strict, and its mistakes named."""

from __future__ import annotations

from pathlib import Path

import pytest

from raytrader.config import load_config
from raytrader.errors import ConfigError
from raytrader.paper.config import PaperConfig, ServiceDecisions

REPO = Path(__file__).resolve().parents[2]


def test_the_example_config_parses() -> None:
    config = load_config(REPO / "pipelines" / "configs" / "paper.yaml", PaperConfig)
    assert config.names == ["GOOG", "SP500"]
    assert config.weights == [0.5, 0.5]
    assert isinstance(config.decisions, ServiceDecisions)


def test_weights_default_to_equal_shares() -> None:
    config = PaperConfig.parse({"session": "a", "symbols": [{"symbol": s} for s in "XYZ"]})
    assert config.weights == [1 / 3] * 3


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"symbols": [{"symbol": "A"}, {"symbol": "A"}]}, "['A'] appear more than once"),
        (
            {"symbols": [{"symbol": "A", "weight": 0.7}, {"symbol": "B", "weight": 0.7}]},
            "sum to 1.4",
        ),
        ({"symbols": [{"symbol": "A", "weight": 0.5}, {"symbol": "B"}]}, "every symbol a weight"),
        ({"session": "Has Spaces"}, "session"),
        ({"timeframe": "7q"}, "timeframe"),
        ({"decisions": {"kind": "oracle"}}, "decisions"),
        ({"kill_switch": {"max_drawdown": 1.5}}, "max_drawdown"),
        ({"start": "2024-01-02T00:00:00"}, "start"),
        ({"start": "2024-02-01T00:00:00Z", "end": "2024-01-01T00:00:00Z"}, "end must come after"),
        ({"surprise": 1}, "surprise"),
    ],
)
def test_a_bad_config_is_refused_naming_the_problem(fields: dict, message: str) -> None:
    data = {"session": "s", "symbols": [{"symbol": "A"}], **fields}
    with pytest.raises(ConfigError, match=None) as info:
        PaperConfig.parse(data, where="session.yaml")
    assert message in str(info.value)
    assert "session.yaml" in str(info.value)
