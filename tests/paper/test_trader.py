"""The paper trader on the real stack: bars replayed through Kafka, the ledger in PostgreSQL.

* A replayed universe gives exactly the portfolio backtest's equity, positions and trades (the
  same bars, the same strategy, the same ``SimConfig``), and ``paper report`` finds its ledger
  equal to the backtest of its own decisions.
* SIGKILLed ten times during a replay, a session's ledger equals an uninterrupted one's, row for
  row.
* The kill switch flattens and halts with its reason; a decision service that does not answer
  leaves every decision recorded with the reason and the account holding its position.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from sqlalchemy import select

from raytrader.backtest.portfolio import run_portfolio_backtest
from raytrader.data import Bars
from raytrader.data.sources import load_bars
from raytrader.db.models import (
    PaperBar,
    PaperDecision,
    PaperFill,
    PaperOffset,
    PaperOrder,
    PaperPosition,
    PaperSession,
    PaperStep,
)
from raytrader.db.store import ExperimentStore
from raytrader.paper.config import PaperConfig, ServiceDecisions, StrategyDecisions
from raytrader.paper.ledger import Ledger
from raytrader.paper.report import session_report
from raytrader.paper.trader import PaperTrader
from raytrader.sim import SimConfig
from raytrader.sim.portfolio import PortfolioSimulator
from raytrader.strategies.base import make_strategy
from raytrader.streaming.producer import BarProducer, bar_messages, interleave
from tests.support.stack_fixture import stack  # noqa: F401

pytestmark = pytest.mark.integration

MA = {"fast": 10, "slow": 30}


def universe(tag: str, n: int = 700) -> list[Bars]:
    """GOOG and the S&P 500 (their last ``n`` common days), under this test's own symbols: the
    stack's ``bars.1d`` topic is shared by every test."""
    out = []
    for name in ("goog", "sp500"):
        bars = load_bars(name, start="2010-06-01")
        frame = bars.frame.iloc[-n:] if name == "goog" else bars.frame.loc[:"2013-03-01"].iloc[-n:]
        out.append(
            Bars.from_frame(
                frame, symbol=f"{tag}{name.upper()}", timeframe="1d", calendar=bars.calendar
            )
        )
    return out


def replay(bootstrap: str, bars: list[Bars], *, interval_s: float = 0.0) -> None:
    producer = BarProducer(bootstrap)
    if interval_s:
        producer.replay(interleave([bar_messages(b, "test") for b in bars]), interval_s=interval_s)
    else:  # one symbol after the other: the trader waits for the second
        for b in bars:
            producer.replay(bar_messages(b, "test"))


def session_config(name: str, bars: list[Bars], **extra: Any) -> PaperConfig:
    return PaperConfig.model_validate({
        "session": name,
        "symbols": [{"symbol": b.symbol} for b in bars],
        "timeframe": "1d",
        "decisions": StrategyDecisions(name="ma_cross", params=MA).model_dump(),
        "sim": SimConfig(stop_loss=0.08).model_dump(mode="json"),
        **extra,
    })  # fmt: skip


@pytest.fixture(scope="module")
def ledger(stack: Any) -> Ledger:  # noqa: F811 - the stack fixture
    return Ledger(ExperimentStore.open(stack.config.store_url))


def run_session(stack: Any, config: PaperConfig, ledger: Ledger) -> tuple[str, PaperTrader]:  # noqa: F811
    trader = PaperTrader(config, ledger, bootstrap=stack.config.kafka_bootstrap)
    try:
        return trader.run(idle_exit_s=5.0), trader
    finally:
        trader.close()


def table(ledger: Ledger, model: Any, session: str, order: tuple[str, ...]) -> pd.DataFrame:
    with ledger.store.session() as s:
        sid = s.scalars(select(PaperSession.id).where(PaperSession.name == session)).one()
        rows = s.scalars(select(model).where(model.session_id == sid)).all()
        drop = {"id", "session_id", "recorded_at", "lag_s", "latency_ms"}
        frame = pd.DataFrame([
            {c.name: getattr(r, c.name) for c in model.__table__.columns if c.name not in drop}
            for r in rows
        ])  # fmt: skip
    return frame.sort_values(list(order)).reset_index(drop=True) if len(frame) else frame


def test_a_replayed_universe_trades_exactly_as_the_portfolio_backtest(
    stack: Any,  # noqa: F811 - the stack fixture
    ledger: Ledger,
) -> None:
    bars = universe("PQA")
    replay(stack.config.kafka_bootstrap, bars)
    config = session_config("parity", bars)
    status, trader = run_session(stack, config, ledger)
    assert status == "running"  # idled out at the replay's end

    backtest = run_portfolio_backtest(bars, make_strategy("ma_cross", MA), config.sim)
    steps = table(ledger, PaperStep, "parity", ("number",))
    assert len(steps) == len(backtest.equity) > 600
    assert np.array_equal(steps["equity"].to_numpy(), backtest.equity.to_numpy())
    times = pd.DatetimeIndex(pd.to_datetime(steps["time"], utc=True))
    assert times.equals(backtest.equity.index)
    positions = table(ledger, PaperPosition, "parity", ("number", "symbol"))
    units = positions.pivot(index="number", columns="symbol", values="units")[backtest.symbols]
    assert np.array_equal(units.to_numpy(), backtest.positions.to_numpy())
    assert trader.sim is not None
    assert np.array_equal(trader.sim.trades(), backtest._output.trades, equal_nan=True)
    assert len(backtest.trades) > 20

    report = session_report(ledger, "parity")
    assert report.max_difference == 0.0
    assert report.summary()["equals_backtest"] is True
    assert report.result is not None
    assert report.result.metrics == backtest.metrics


def _cli(config_path: Path, *args: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "raytrader.cli",
        "paper",
        "run",
        "--config",
        str(config_path),
        *args,
    ]


@pytest.mark.slow
def test_killed_ten_times_the_ledger_equals_an_uninterrupted_run(
    stack: Any,  # noqa: F811 - the stack fixture
    ledger: Ledger,
    tmp_path: Path,
) -> None:
    bars = universe("PQK", n=500)
    # the kernel compiled into numba's on-disk cache first: a trader killed while it compiles
    # would leave the next one to compile again, and none would get to trade
    PortfolioSimulator(SimConfig(), 252.0, np.full(2, 0.5)).step(
        np.ones(2), np.ones(2), np.ones(2), np.ones(2), np.ones(2)
    )
    env = dict(
        os.environ,
        RAYTRADER_KAFKA_BOOTSTRAP=stack.config.kafka_bootstrap,
        RAYTRADER_DB_URL=stack.config.store_url,
    )
    killed = tmp_path / "killed.yaml"
    killed.write_text(yaml.safe_dump(session_config("killed", bars).model_dump(mode="json")))
    feed = threading.Thread(
        target=replay, args=(stack.config.kafka_bootstrap, bars), kwargs={"interval_s": 1 / 60}
    )
    feed.start()
    rng = random.Random(3)
    steps_seen = []
    for _ in range(10):
        proc = subprocess.Popen(
            _cli(killed), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        time.sleep(rng.uniform(3.0, 7.0))
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        steps_seen.append(len(table(ledger, PaperStep, "killed", ("number",))))
    feed.join(timeout=300)
    final = subprocess.run(
        _cli(killed, "--idle-exit", "5", "--json"), env=env, capture_output=True,
        text=True, timeout=600,
    )  # fmt: skip
    assert final.returncode == 0, final.stderr[-3000:]
    assert steps_seen[-1] > steps_seen[0], f"the kills must come during the replay: {steps_seen}"

    calm = session_config("calm", bars)
    run_session(stack, calm, ledger)
    for model, order in (
        (PaperStep, ("number",)),
        (PaperDecision, ("number", "symbol")),
        (PaperOrder, ("number", "symbol")),
        (PaperFill, ("number", "seq")),
        (PaperPosition, ("number", "symbol")),
        (PaperBar, ("symbol", "open_time")),
    ):
        a, b = table(ledger, model, "killed", order), table(ledger, model, "calm", order)
        assert len(a) > 0, model.__tablename__
        pd.testing.assert_frame_equal(a, b, check_exact=True, obj=model.__tablename__)
    offsets = table(ledger, PaperOffset, "killed", ("topic", "partition"))
    assert len(offsets) >= 1


def test_the_kill_switch_flattens_and_halts_with_its_reason(
    stack: Any,  # noqa: F811 - the stack fixture
    ledger: Ledger,
) -> None:
    bars = universe("PQS", n=400)
    replay(stack.config.kafka_bootstrap, bars)
    config = session_config("switch", bars, kill_switch={"max_drawdown": 0.03})
    status, trader = run_session(stack, config, ledger)
    assert status == "halted"
    assert trader.resume.reason is not None
    assert trader.resume.reason.startswith("kill switch: drawdown")
    assert trader.sim is not None
    assert (trader.sim.units == 0.0).all()
    steps = table(ledger, PaperStep, "switch", ("number",))
    assert len(steps) < 400  # it stopped trading
    orders = table(ledger, PaperOrder, "switch", ("number", "symbol"))
    last = orders[orders["number"] == orders["number"].max()]
    assert (last["target"] == 0.0).all()  # the flatten
    # a halted session does not trade again
    status, _ = run_session(stack, config, ledger)
    assert status == "halted"
    assert session_report(ledger, "switch").max_difference == 0.0


def test_a_decision_service_that_does_not_answer_holds_the_position_with_the_reason(
    stack: Any,  # noqa: F811 - the stack fixture
    ledger: Ledger,
) -> None:
    bars = universe("PQD", n=30)
    replay(stack.config.kafka_bootstrap, bars)
    nobody = ServiceDecisions(url="http://127.0.0.1:9", feature_wait_s=0.2, timeout_s=0.5)
    config = session_config("no-service", bars, decisions=nobody.model_dump())
    run_session(stack, config, ledger)
    decisions = table(ledger, PaperDecision, "no-service", ("number", "symbol"))
    steps = table(ledger, PaperStep, "no-service", ("number",))
    assert len(decisions) == 2 * len(steps) >= 2 * 25
    assert decisions["target"].isna().all()
    assert (decisions["action"] == "keep").all()
    assert decisions["reason"].str.contains("unreachable at http://127.0.0.1:9").all()
    positions = table(ledger, PaperPosition, "no-service", ("number", "symbol"))
    assert (positions["units"] == 0.0).all()  # never traded, and nothing was flattened
    assert (steps["equity"] == 10_000.0).all()
