"""The command line: output shapes, errors (one line, exit 2, no traceback) and files written."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from raytrader.cli import main
from tests.support.cli import run_cli
from tests.support.stack_fixture import stack  # noqa: F401  (pytest fixture)


def test_backtest_json_has_the_documented_fields(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(
        capsys,
        "backtest",
        "--data",
        "goog",
        "--strategy",
        "ma_cross",
        "--param",
        "fast=10",
        "--param",
        "slow=20",
        "--commission",
        "0.002",
        "--cash",
        "10000",
        "--slippage-bps",
        "0",
        "--units",
        "whole",
        "--json",
    )
    assert code == 0
    payload = json.loads(out)
    for key in (
        "trades",
        "total_return",
        "annual_return",
        "sharpe",
        "sortino",
        "max_drawdown",
        "final_equity",
    ):
        assert key in payload
    # returns are fractions: GOOG ma_cross(10,20) at 0.2% commission is about +462% (backtesting.py: 4.626)
    assert 4.5 < payload["total_return"] < 4.8
    assert payload["trades"] == 94
    assert payload["final_equity"] == pytest.approx(10_000 * (1 + payload["total_return"]))


def test_every_json_and_table_names_its_calendar_and_bars_per_year(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from raytrader.data import load_bars
    from raytrader.data.files import write_bars_csv

    csv = str(write_bars_csv(load_bars("goog"), tmp_path / "goog.csv"))
    outputs = {}
    for data in ("goog", csv):
        code, out, _ = run_cli(capsys, "backtest", "--data", data, "--json")
        assert code == 0
        outputs[data] = json.loads(out)
        assert outputs[data]["calendar"] == "equity"
        assert outputs[data]["periods_per_year"] == 252
    assert outputs["goog"]["sharpe"] == outputs[csv]["sharpe"]
    assert outputs["goog"]["annual_return"] == outputs[csv]["annual_return"]
    code, out, _ = run_cli(capsys, "backtest", "--data", csv, "--calendar", "crypto", "--json")
    assert json.loads(out)["periods_per_year"] == 365
    code, out, _ = run_cli(capsys, "backtest", "--data", "goog")
    assert "annualized as equity: 252 bars a year" in out
    code, out, _ = run_cli(capsys, "sweep", "--data", "goog", "--grid", "fast=5:7", "--json")
    assert json.loads(out)["calendar"] == "equity"
    for args in (("features",), ("data", "show", "goog")):
        code, out, _ = run_cli(capsys, *args, "--calendar", "fx", "--json")
        assert code == 0
        assert json.loads(out)["periods_per_year"] == 260


def test_start_and_end_restrict_the_bars_of_every_data_command(
    capsys: pytest.CaptureFixture[str],
) -> None:
    window = ("--start", "2010-01-01", "--end", "2011-01-01")
    code, out, _ = run_cli(capsys, "backtest", "--data", "goog", *window, "--json")
    assert code == 0
    payload = json.loads(out)
    assert payload["start"] == "2010-01-04T00:00:00+00:00"
    assert payload["end"] == "2010-12-31T00:00:00+00:00"
    assert payload["bars"] == 252
    code, out, _ = run_cli(capsys, "data", "show", "goog", *window, "--json")
    assert json.loads(out)["bars"] == 252
    code, out, err = run_cli(capsys, "backtest", "--data", "goog", "--start", "2030-01-01")
    assert code == 2
    assert "no bars in [2030-01-01" in err
    assert "Traceback" not in err
    code, _, err = run_cli(capsys, "backtest", "--data", "goog", "--calendar", "nyse")
    assert code == 2
    assert err.strip() == "error: unknown calendar 'nyse'; use one of auto, equity, fx, crypto"


def test_backtest_writes_equity_csv_and_report(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    eq = tmp_path / "equity.csv"
    rep = tmp_path / "report"
    code, _, _ = run_cli(
        capsys, "backtest", "--data", "goog", "--equity-csv", str(eq), "--report", str(rep)
    )
    assert code == 0
    frame = pd.read_csv(eq)
    assert list(frame.columns) == ["timestamp", "equity", "units", "target"]
    assert len(frame) == 2148
    assert {p.name for p in rep.iterdir()} == {
        "equity_drawdown.png",
        "returns_hist.png",
        "trades.csv",
        "equity.csv",
        "metrics.json",
    }


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["backtest", "--data", "nope"], "unknown dataset 'nope'"),
        (["backtest", "--strategy", "nope"], "unknown strategy 'nope'"),
        (["backtest", "--param", "speed=3"], "unknown parameter(s) ['speed']"),
        (["backtest", "--param", "fast=30"], "fast (30) must be smaller than slow (20)"),
        (["backtest", "--param", "fast=ten"], "fast"),
        (["backtest", "--param", "fast"], "use name=value"),
        (["backtest", "--commission", "-0.1"], "backtest.commission"),
        (["backtest", "--units", "half"], "backtest.units"),
        (["backtest", "--sizing", "martingale"], "backtest.sizing"),
        (["backtest", "--data", "missing.csv"], "missing.csv: no such file"),
        (["sweep", "--grid", "fast=9:1"], "grid fast='9:1'"),
        (["sweep"], "at least one --grid"),
        (["data", "resample", "--data", "goog", "--to", "1h"], "from 1d to 1h"),
        (["features", "--set", "bar_features_v9"], "unknown feature set"),
    ],
)
def test_bad_input_prints_one_line_and_exits_2(
    capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    code, out, err = run_cli(capsys, *args)
    assert code == 2
    assert message in err
    assert err.startswith("error: ")
    assert len(err.strip().splitlines()) == 1
    assert "Traceback" not in err + out


def test_bad_csv_names_file_row_and_field(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text(
        "Date,Open,High,Low,Close,Volume\n"
        "2024-01-01,10,11,9,10.5,100\n"
        "2024-01-02,10,9.5,9,10.5,100\n"  # high below close
    )
    code, _, err = run_cli(capsys, "backtest", "--data", str(bad))
    assert code == 2
    assert "bad.csv" in err
    assert "high_ge_open_close" in err
    assert "2024-01-02" in err


def test_debug_shows_the_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    from raytrader.errors import UnknownNameError

    with pytest.raises(UnknownNameError):
        main(["--debug", "backtest", "--data", "nope"])


def test_sweep_json_is_sorted_and_counts_skipped(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(
        capsys,
        "sweep",
        "--data",
        "goog",
        "--grid",
        "fast=5:20:5",
        "--grid",
        "slow=10:30:10",
        "--top",
        "3",
        "--json",
    )
    assert code == 0
    payload = json.loads(out)
    # fast 5,10,15,20 x slow 10,20,30 = 12; (10,10) (15,10) (20,10) (20,20) are invalid
    assert payload["combinations"] == 8
    assert payload["skipped"] == 4
    sharpes = [row["sharpe"] for row in payload["top"]]
    assert sharpes == sorted(sharpes, reverse=True)


def test_features_json_reports_the_set(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "features", "--data", "goog", "--rows", "2", "--json")
    assert code == 0
    payload = json.loads(out)
    assert payload["feature_set"] == "bar_features_v1"
    assert payload["features"] >= 40
    assert len(payload["rows"]) == 2
    assert payload["rows"][-1]["warm"] is True


def test_data_list_and_show(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "data", "list", "--json")
    assert code == 0
    names = {row["name"] for row in json.loads(out)}
    assert names == {"goog", "eurusd", "sp500", "synthetic"}
    code, out, _ = run_cli(capsys, "data", "show", "eurusd", "--json")
    assert code == 0
    info = json.loads(out)
    assert info["timeframe"] == "1h"
    assert info["bars"] == 5000
    assert info["calendar"] == "fx"


def test_data_resample_writes_a_csv_that_loads_back(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    out_csv = tmp_path / "eurusd_4h.csv"
    code, _, _ = run_cli(
        capsys, "data", "resample", "--data", "eurusd", "--to", "4h", "--out", str(out_csv)
    )
    assert code == 0
    code, out, _ = run_cli(capsys, "data", "show", str(out_csv), "--timeframe", "4h", "--json")
    assert code == 0
    assert json.loads(out)["timeframe"] == "4h"


def test_console_script_exit_code_and_stderr() -> None:
    """The installed entry point itself (not just main()) maps errors to exit 2."""
    proc = subprocess.run(
        [sys.executable, "-m", "raytrader.cli", "backtest", "--data", "nope"],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: unknown dataset 'nope'")


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "--version")
    assert code == 0
    assert out.startswith("raytrader ")


@pytest.mark.integration
def test_run_strategies_json_includes_ensemble_and_stats(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = run_cli(
        capsys,
        "run-strategies",
        "--data",
        "goog",
        "--strategies",
        "rsi,macd,momentum",
        "--ensemble",
        "voting",
        "--max-concurrency",
        "2",
        "--json",
    )
    assert code == 0
    payload = json.loads(out)
    assert [s["label"] for s in payload["strategies"]] == ["rsi", "macd", "momentum"]
    assert payload["ensemble"]["strategy"] == "ensemble:voting"
    assert payload["stats"]["successes"] == 3


def test_unknown_option_is_a_usage_error_not_a_traceback(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, err = run_cli(capsys, "demo", "--no-such-option")
    assert code == 2
    assert "No such option: --no-such-option" in err
    assert "Traceback" not in err + out


@pytest.mark.integration
@pytest.mark.slow
def test_demo_writes_a_report(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, _ = run_cli(
        capsys, "demo", "--out", str(tmp_path), "--stack", "off", "--no-serve", "--no-experiments"
    )
    assert code == 0
    assert "embedded mode" in out
    assert "Feast online (sqlite): GOOG 1d bar 2013-03-01" in out
    assert (tmp_path / "mlflow.db").is_file()  # the embedded MLflow store
    assert list((tmp_path / "mlartifacts").rglob("run.json"))
    assert "ensemble" in out
    assert "report:" in out
    runs = list(tmp_path.glob("demo-*"))
    assert len(runs) == 1
    summary = json.loads((runs[0] / "run.json").read_text())
    assert summary["stats"]["successes"] == 7
    assert "buy_and_hold" in [s["label"] for s in summary["strategies"]]
    assert summary["ensemble"]["success"] is True
    assert (runs[0] / "ensemble" / "equity_drawdown.png").is_file()
    assert (tmp_path / "history.jsonl").is_file()


@pytest.mark.integration
@pytest.mark.slow
def test_demo_uses_the_stack_when_it_is_up(stack, tmp_path: Path) -> None:  # noqa: F811
    """With every stack service answering, the demo runs on the stack's Ray head, records the run
    on its MLflow server and serves the features from its Redis-backed Feast store."""
    import os

    from mlflow.tracking import MlflowClient

    cfg = stack.config
    env = {**os.environ, **cfg.to_env()}
    for key in ("RAY_ADDRESS", "MLFLOW_TRACKING_URI"):
        env.pop(key, None)
    proc = subprocess.run(
        # the experiments (and the API and dashboard they leave running) are tests/test_demo.py's
        [sys.executable, "-m", "raytrader.cli", "demo", "--out", str(tmp_path), "--no-experiments"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "using the local stack" in proc.stdout
    assert "Feast online (redis): GOOG 1d bar 2013-03-01" in proc.stdout
    # it ends with the decision service running, one decision, and the URLs
    assert "raytrader-ensemble v" in proc.stdout
    assert f"decision service: {cfg.serve_url}" in proc.stdout
    assert f"Ray dashboard: {cfg.ray_dashboard_url}" in proc.stdout
    assert f"MLflow UI: {cfg.mlflow_uri}" in proc.stdout
    assert f"at {cfg.mlflow_uri}" in proc.stdout
    assert not (tmp_path / "mlflow.db").exists()
    client = MlflowClient(tracking_uri=cfg.mlflow_uri)
    exp = client.get_experiment_by_name("raytrader-demo")
    assert exp is not None
    (run,) = client.search_runs([exp.experiment_id], max_results=1)
    assert run.data.params["symbol"] == "GOOG"
    assert "ensemble.sharpe" in run.data.metrics
    assert "run.json" in [a.path for a in client.list_artifacts(run.info.run_id)]


def test_the_margin_account_is_on_by_default_and_can_be_switched_off(
    capsys: pytest.CaptureFixture[str],
) -> None:
    def run(*extra: str) -> dict[str, float]:
        code, out, err = run_cli(
            capsys, "backtest", "--data", "goog", "--strategy", "rsi", *extra, "--json"
        )
        assert code == 0, err
        return dict(json.loads(out))

    margin = run()
    frictionless = run("--margin", "off")
    no_carry = run("--borrow-rate", "0", "--financing-rate", "0")
    assert margin["final_equity"] > 0  # a short margin-called before it is bust
    assert frictionless["total_return"] == -1.0  # the old account went below zero: bust
    assert no_carry["final_equity"] > margin["final_equity"]  # borrowing the shares costs
    code, _, err = run_cli(
        capsys, "backtest", "--data", "goog", "--margin", "off", "--borrow-rate", "0.1"
    )
    assert code == 2
    assert "--margin off takes no margin rates" in err


def test_features_backfill_writes_offline_rows_and_the_online_row(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from raytrader.features import feast_repo as fr

    data = tmp_path / "feast"
    args = ("features", "backfill", "--data", "eurusd", "--profile", "sqlite")
    code, out, err = run_cli(capsys, *args, "--feast-data", str(data), "--json")
    assert code == 0, err
    summary = json.loads(out)
    assert (summary["symbol"], summary["timeframe"], summary["rows"]) == ("EURUSD", "1h", 5000)
    assert summary["online_bar"] == summary["last_bar"] == "2018-02-07T15:00:00+00:00"
    assert len(fr.read_offline("EURUSD", data, timeframe="1h")) == 5000
    # the online store down: one line, exit 2, nothing written
    other = tmp_path / "other"
    code, _, err = run_cli(
        capsys,
        "features",
        "backfill",
        "--data",
        "goog",
        "--redis",
        "127.0.0.1:1",
        "--feast-data",
        str(other),
    )
    assert code == 2
    assert err.startswith("error: cannot write to Feast (redis online store")
    assert not list((other / "bar_features_v1").glob("*.parquet"))
