"""Section 10: the experiment store — writing a million RL steps and reading one episode back, on
PostgreSQL (a server this section starts, as the stack runs it) beside SQLite (the embedded demo's
store)."""

from __future__ import annotations

import shutil
import socket
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import Section, Verdict, fmt_s, load_average, log, table, verdict

NAME = "store"
EPISODES = 200
STEPS = 5_000  # per episode: EPISODES x STEPS = 1,000,000 rows
READS = 200


def _free_base() -> int:
    """A port block for a private PostgreSQL (the stack's layout: base + 5432 % 10000)."""
    for base in range(41000, 60000, 1000):
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", base + 5432 % 10000)) != 0:
                return base
    raise RuntimeError("no free port block for PostgreSQL")


def _steps(n: int, seed: int) -> Any:
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    times = pd.date_range("2020-01-01", periods=n, freq="1min", tz="UTC")
    return pd.DataFrame(
        {
            "t": np.arange(n),
            "time": times,
            "action": rng.integers(0, 3, n).astype(float),
            "target": rng.choice([-1.0, 0.0, 1.0], n),
            "position": rng.normal(size=n),
            "reward": rng.normal(scale=1e-3, size=n),
            "equity": 10_000 + rng.normal(size=n).cumsum(),
            "price": 100 + rng.normal(size=n).cumsum(),
        }
    )


def _one(url: str, copy_steps: bool = True) -> dict[str, float]:
    import numpy as np
    from sqlalchemy import select
    from sqlalchemy.orm import Session

    from raytrader.db.engine import make_engine, upgrade
    from raytrader.db.models import Base, Step
    from raytrader.db.store import EpisodeRecord, ExperimentStore, RunSpec, StepSampling

    engine = make_engine(url)
    upgrade(engine)
    Base.metadata.drop_all(engine)  # each contender starts from empty tables
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE alembic_version")
    upgrade(engine)
    store = ExperimentStore(engine, copy_steps=copy_steps)
    run_id = store.start_run(RunSpec(key="bench", kind="rl", name="bench"))
    sampling = StepSampling(every=1, max_per_episode=STEPS)
    frames = [_steps(STEPS, i % 4) for i in range(4)]
    episode_ids = []
    t0 = time.perf_counter()
    for i in range(EPISODES):
        record = EpisodeRecord(key=f"ep{i}", length=STEPS, reward_sum=0.0, steps=frames[i % 4])
        ep = store.record_episode(run_id, record, sampling)
        assert ep is not None
        episode_ids.append(ep)
    write_s = time.perf_counter() - t0
    rng = np.random.default_rng(0)
    reads = []
    with Session(engine) as s:
        for ep in rng.choice(episode_ids, READS):
            t = time.perf_counter()
            rows = s.execute(
                select(Step.t, Step.time, Step.action, Step.target, Step.position, Step.reward,
                       Step.equity, Step.price)
                .where(Step.episode_id == int(ep)).order_by(Step.t)
            ).all()  # fmt: skip
            reads.append(time.perf_counter() - t)
            assert len(rows) == STEPS
    engine.dispose()
    arr = np.array(reads)
    return {
        "write_s": write_s,
        "rows_per_s": EPISODES * STEPS / write_s,
        "p50": float(np.percentile(arr, 50)),
        "p95": float(np.percentile(arr, 95)),
    }


def run() -> Section:
    from raytrader.stack import Stack, StackConfig

    load_start = load_average()
    base = _free_base()
    state = Path(tempfile.mkdtemp(prefix="bench-store-"))
    cfg = StackConfig(state_dir=state, postgres_port=base + 5432 % 10000)
    stack = Stack(cfg)
    results: dict[str, dict[str, float]] = {}
    try:
        log(f"store: starting PostgreSQL on 127.0.0.1:{cfg.postgres_port}")
        stack.up(["postgres"])
        log(f"store: PostgreSQL, batched INSERTs, {EPISODES} x {STEPS} steps")
        results["PostgreSQL 15, batched INSERT (baseline)"] = _one(cfg.store_url, False)
        log(f"store: PostgreSQL, COPY, {EPISODES} x {STEPS} steps")
        results["PostgreSQL 15, COPY (what the store does)"] = _one(cfg.store_url)
        with tempfile.TemporaryDirectory(prefix="bench-sqlite-") as tmp:
            log(f"store: SQLite, {EPISODES} x {STEPS} steps")
            results["SQLite (embedded demo)"] = _one(f"sqlite:///{tmp}/store.db")
    finally:
        stack.purge()
        shutil.rmtree(state, ignore_errors=True)
    rows = [
        [name, fmt_s(r["write_s"]), f"{r['rows_per_s']:,.0f}", fmt_s(r["p50"]), fmt_s(r["p95"])]
        for name, r in results.items()
    ]
    pg = results["PostgreSQL 15, COPY (what the store does)"]
    verdicts = [
        Verdict("store: 1M steps written (PostgreSQL)", "reported", f"{pg['rows_per_s']:,.0f} rows/s", None),
        Verdict("store: one episode's 5,000 steps read, p95", "reported", fmt_s(pg["p95"]), None),
    ]  # fmt: skip
    body = f"""
{EPISODES} episodes of {STEPS:,} steps each — {EPISODES * STEPS:,} rows — written through
`ExperimentStore.record_episode` (one transaction per episode; on PostgreSQL the rows go by
`COPY` into a temporary table, then one `INSERT ... SELECT ... ON CONFLICT DO NOTHING` on
`(episode_id, t)`; beside it the plain path, batched multi-row INSERTs with the same conflict
rule, which SQLite uses), then {READS} random episodes' steps read back
in `t` order, as the API's `/api/v1/episodes/{{id}}/steps` does.

{table(["store", "1M steps written", "rows/s", "one episode read, p50", "p95"], rows)}

{verdict(None)} reported, no target set by the issue. Step sampling (`StepSampling`, 2,000 steps
an episode by default for `train rl`) keeps a long run well under this.

*Method.* `time.perf_counter()` around the whole write and around each read, in this process.
PostgreSQL is the stack's service (`raytrader.stack`, Debian's server) started for this section
on a private port; SQLite is a file in a temporary directory. Load average (1 / 5 min) at section
start: {load_start}; at end: {load_average()}.
"""
    return Section(NAME, "10. The experiment store", body, verdicts)
