"""docker/requirements.py: what the image installs for a list of pyproject.toml extras."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _requirements(extras: str) -> list[str]:
    spec = importlib.util.spec_from_file_location(
        "docker_requirements", REPO / "docker" / "requirements.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return list(module.requirements(str(REPO / "pyproject.toml"), extras))


def test_the_default_image_runs_searches_but_carries_no_torch() -> None:
    names = _requirements("stack,search")
    assert {"optuna>=4", "scikit-learn>=1.5", "ray[tune]>=2.40"} <= set(names)
    assert not any(n.startswith(("torch", "raytrader")) for n in names)


def test_an_extra_naming_another_of_ours_brings_its_requirements_once() -> None:
    train = _requirements("stack,train")
    assert "torch==2.13.0" in train
    assert "optuna>=4" in train
    assert not any(n.startswith("raytrader") for n in train)
    assert len(train) == len(set(train))
    assert set(_requirements("search,train")) == set(_requirements("train,search"))


def test_an_unknown_extra_is_refused_naming_the_known_ones() -> None:
    with pytest.raises(SystemExit, match=r"unknown extra 'gpu'.*'search'"):
        _requirements("stack,gpu")
