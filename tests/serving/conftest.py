"""A registry and an online store for the decision-service tests.

``make_world(root)``: an embedded MLflow store (SQLite) with two rule members (ma_cross 10/50 and
macd, both readable from one feature row) and the ensemble ``raytrader-ensemble`` v1 at
``champion``, plus a SQLite Feast store holding GOOG's last bar online — GOOG's bars moved forward
in time so that the last one closed at a recent midnight UTC (:func:`recent`): the service refuses
features older than two bars, and these tests are about fresh ones. ``World.app()`` builds the
FastAPI app around a local :class:`ModelHolder` (no poller; tests call ``check()``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from raytrader.registry import PyfuncBase

API = "a" * 32
ADMIN = "b" * 32
AUTH = {"Authorization": f"Bearer {API}"}
ADMIN_AUTH = {"Authorization": f"Bearer {ADMIN}"}
MEMBERS = (("t-ma-cross", "ma_cross", {"fast": 10, "slow": 50}), ("t-macd", "macd", {}))


class NonFinite(PyfuncBase):
    """A deliberately broken ensemble: NaN targets (validation must refuse it)."""

    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> pd.DataFrame:
        return pd.DataFrame(
            {"target": np.nan, "confidence": 0.5, "action": "buy"}, index=model_input.index
        )


@dataclass
class World:
    root: Path
    uri: str
    bars: Any

    @property
    def feast_data(self) -> Path:
        return self.root / "feast"

    def ensemble(self, weights: tuple[float, float] = (2.0, 1.0), alias: str = "champion") -> str:
        from raytrader.ensemble import EnsembleConfig, Member, build_ensemble

        members = tuple(
            Member(name=name, version=1, weight=w)
            for (name, _, _), w in zip(MEMBERS, weights, strict=True)
        )
        cfg = EnsembleConfig(
            members=members, alias=alias, output_dir=str(self.root), tracking_uri=self.uri
        )
        return str(build_ensemble(cfg)["version"])

    def broken(self, alias: str = "champion") -> str:
        from raytrader.ensemble import decision_frame
        from raytrader.registry import promote, register_model, serving_example

        example = decision_frame(serving_example(self.bars, n=20))
        out = pd.DataFrame(
            {"target": 0.0, "confidence": 0.0, "action": "hold"}, index=example.index
        )
        version = register_model(
            NonFinite(),
            name="raytrader-ensemble",
            kind="ensemble",
            input_example=example,
            output_example=out,
            tracking_uri=self.uri,
            root=self.root,
        )
        promote("raytrader-ensemble", version, alias, tracking_uri=self.uri, root=self.root)
        return str(version)

    def config(self, **overrides: Any) -> Any:
        from raytrader.serving.config import ServiceConfig

        fields = {
            "tracking_uri": self.uri,
            "feast_profile": "sqlite",
            "feast_data": str(self.feast_data),
            "poll_interval_s": 0,
            **overrides,
        }
        return ServiceConfig.model_validate(fields)

    def app(self, *, check: bool = True, admin: str | None = ADMIN, **overrides: Any) -> Any:
        from fastapi.testclient import TestClient

        from raytrader.serving.config import Tokens
        from raytrader.serving.model import ModelHolder
        from raytrader.serving.service import DecisionService, LocalModel, create_app

        config = self.config(**overrides)
        holder = ModelHolder(config)
        if check:
            holder.check()
        service = DecisionService(config, LocalModel(holder), tokens=Tokens(api=API, admin=admin))
        client = TestClient(create_app(service))
        client.holder = holder  # type: ignore[attr-defined]
        return client


def recent(bars: Any) -> Any:
    """``bars`` moved forward by whole days so that the last one closed at the latest midnight UTC
    at least two hours ago: the features are then between 2 and 26 hours old, fresh under the
    default limit of two 1d bars and stale under a limit of one hour, whatever the time of day."""
    from raytrader.data.bars import Bars

    last_close = (pd.Timestamp.now(tz="UTC") - pd.Timedelta(hours=2)).floor("D")
    shift = last_close - (bars.index[-1] + bars.timeframe.delta)
    frame = bars.frame.copy()
    frame.index = frame.index + shift
    return Bars.from_frame(
        frame, symbol=bars.symbol, timeframe=bars.timeframe, calendar=bars.calendar
    )


def make_world(root: Path, *, uri: str | None = None, store: Any = None) -> World:
    """Members and ensemble v1 at champion in ``uri`` (default: embedded under ``root``), GOOG's
    last bar online in ``store`` (default: a SQLite Feast store under ``root``)."""
    from raytrader.data.sources import load_bars
    from raytrader.ensemble import register_rules
    from raytrader.features import feast_repo as fr
    from raytrader.features.engine import compute_features
    from raytrader.tracking import embedded_uri, using_uri

    uri = uri or embedded_uri(root)
    bars = recent(load_bars("goog"))
    world = World(root=root, uri=uri, bars=bars)
    with using_uri(uri):
        register_rules(MEMBERS, tracking_uri=uri, root=root)
        world.ensemble()
    fs = store if store is not None else fr.store("sqlite", data=world.feast_data)
    fr.apply(fs)
    fr.push(fs, fr.feature_rows(bars, compute_features(bars)).tail(1), to="online")
    return world


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    return make_world(tmp_path_factory.mktemp("serving"))
