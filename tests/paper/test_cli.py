"""``raytrader paper status|stop|report|delete`` on a ledger (SQLite), and ``run``'s refusals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from raytrader.db.store import ExperimentStore
from tests.api.conftest import PAPER_STEPS, seed_paper
from tests.support.cli import run_cli


@pytest.fixture
def db(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    seed_paper(ExperimentStore.open(url))
    return url


def test_status_lists_the_sessions(capsys: pytest.CaptureFixture[str], db: str) -> None:
    code, out, _ = run_cli(capsys, "paper", "status", "--db-url", db, "--json")
    assert code == 0
    (row,) = json.loads(out)
    assert (row["session"], row["status"], row["steps"]) == ("paper-seed", "running", PAPER_STEPS)
    code, _, err = run_cli(capsys, "paper", "status", "--session", "nope", "--db-url", db)
    assert code == 2
    assert "no paper session named 'nope'" in err


def test_stop_marks_the_session_for_its_trader(capsys: pytest.CaptureFixture[str], db: str) -> None:
    code, out, _ = run_cli(capsys, "paper", "stop", "--session", "paper-seed", "--db-url", db)
    assert (code, out.strip()) == (0, "paper session paper-seed: asked to stop")
    _, out, _ = run_cli(capsys, "paper", "status", "--db-url", db, "--json")
    assert json.loads(out)[0]["status"] == "stopped"


def test_report_checks_the_ledger_against_the_backtest_of_its_decisions(
    capsys: pytest.CaptureFixture[str], db: str, tmp_path: Path
) -> None:
    """The seeded ledger's equity is made up, not the kernel's: the report must say so."""
    code, out, err = run_cli(
        capsys, "paper", "report", "--session", "paper-seed", "--db-url", db, "--json",
        "--out", str(tmp_path / "report"),
    )  # fmt: skip
    assert code == 0, err
    summary = json.loads(out)
    assert summary["equals_backtest"] is False
    assert summary["max_difference"] > 0
    assert summary["decisions"] == {"buy": PAPER_STEPS, "keep": PAPER_STEPS}
    assert summary["no_decision"] == {"stale features": PAPER_STEPS}
    assert (tmp_path / "report" / "metrics.json").is_file()


def test_delete_removes_the_whole_ledger(capsys: pytest.CaptureFixture[str], db: str) -> None:
    code, _, _ = run_cli(capsys, "paper", "delete", "--session", "paper-seed", "--db-url", db)
    assert code == 0
    _, out, _ = run_cli(capsys, "paper", "status", "--db-url", db, "--json")
    assert json.loads(out) == []
    code, _, err = run_cli(capsys, "paper", "delete", "--session", "paper-seed", "--db-url", db)
    assert (code, "no paper session" in err) == (2, True)


def test_run_refuses_a_changed_config_and_a_bad_file(
    capsys: pytest.CaptureFixture[str], db: str, tmp_path: Path
) -> None:
    changed = tmp_path / "changed.yaml"
    changed.write_text("session: paper-seed\nsymbols: [{symbol: AAA}]\n")
    code, _, err = run_cli(
        capsys, "paper", "run", "--config", str(changed), "--db-url", db,
        "--bootstrap", "127.0.0.1:9",
    )  # fmt: skip
    assert code == 2
    assert "exists with another config" in err
    bad = tmp_path / "bad.yaml"
    bad.write_text("session: x\nsymbols: []\n")
    code, _, err = run_cli(capsys, "paper", "run", "--config", str(bad), "--db-url", db)
    assert code == 2
    assert "bad.yaml" in err
    assert "symbols" in err
