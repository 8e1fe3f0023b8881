"""Section 6: training — environment steps/s against FinRL's StockTradingEnv, PPO throughput at 1
and 2 env runners, ASHA against no scheduler, and PPO out of sample on GOOG observing
``bar_features_v1`` and the scale-free ``bar_features_v2`` side by side (same seed, budget, bars).

FinRL's environment is the real class from the ``finrl`` package (installed ``--no-deps`` by the
bench extra; its module is loaded from its file because ``finrl/__init__`` imports live-trading
clients we cannot install here). It trades one stock on the same GOOG bars with 8 indicators.
"""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import Section, Verdict, fmt_s, load_average, log, table

NAME = "training"
VECTOR_TARGET = 100_000.0
VS_FINRL_TARGET = 20.0
#: the out-of-sample PPO runs once per feature set, everything else equal
OOS_FEATURE_SETS = ("bar_features_v1", "bar_features_v2")
FINRL_INDICATORS = [
    "macd",
    "rsi_14",
    "cci_20",
    "adx_14",
    "bb_upper",
    "bb_lower",
    "sma_20",
    "sma_50",
]


def _finrl_env_class() -> Any:
    found = importlib.util.find_spec("finrl")  # locate it without running finrl/__init__
    if found is None or not found.submodule_search_locations:
        raise RuntimeError("finrl is not installed (make bench installs it)")
    root = Path(next(iter(found.submodule_search_locations)))
    path = root / "meta" / "env_stock_trading" / "env_stocktrading.py"
    spec = importlib.util.spec_from_file_location("finrl_env_stocktrading", path)
    if spec is None or spec.loader is None:
        raise RuntimeError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.StockTradingEnv


def _finrl_env() -> Any:
    import pandas as pd

    from raytrader.data import load_bars
    from raytrader.features import compute_features

    bars = load_bars("goog")
    feats = compute_features(bars)
    names = [n for n in FINRL_INDICATORS if n in feats.columns][:8]
    warm = feats["warm"].to_numpy()
    df = pd.DataFrame(
        {
            "date": bars.index[warm].strftime("%Y-%m-%d"),
            "tic": "GOOG",
            "close": bars.column("close")[warm],
            **{n: feats[n].to_numpy()[warm] for n in names},
        }
    ).reset_index(drop=True)
    env_cls = _finrl_env_class()
    return env_cls(
        df=df,
        stock_dim=1,
        hmax=100,
        initial_amount=10_000,
        num_stock_shares=[0],
        buy_cost_pct=[0.001],
        sell_cost_pct=[0.001],
        reward_scaling=1e-4,
        state_space=1 + 2 + len(names),
        action_space=1,
        tech_indicator_list=names,
        print_verbosity=10**9,
    )


def _steps_per_second(step: Any, reset: Any, n: int) -> float:
    reset()
    t0 = time.perf_counter()
    for _ in range(n):
        if step():
            reset()
    return n / (time.perf_counter() - t0)


def _env_rows() -> tuple[list[list[str]], list[Verdict]]:
    from raytrader.data import load_bars
    from raytrader.envs import EnvConfig, Market, TradingEnv, VectorTradingEnv

    rng = np.random.default_rng(0)
    market = Market.from_bars(load_bars("goog"))
    cfg = EnvConfig(episode_length=500)

    log("training: FinRL StockTradingEnv")
    finrl = _finrl_env()
    finrl_actions = rng.uniform(-1, 1, size=(50_000, 1)).astype(np.float32)
    it = iter(finrl_actions)

    def finrl_step() -> bool:
        _, _, term, trunc, _ = finrl.step(next(it))
        return bool(term or trunc)

    finrl_sps = _steps_per_second(finrl_step, lambda: finrl.reset(seed=0), 20_000)

    log("training: raytrader TradingEnv (scalar)")
    env = TradingEnv(market, cfg)
    acts = iter(rng.integers(0, 3, size=200_000))

    def ours_step() -> bool:
        _, _, term, trunc, _ = env.step(next(acts))
        return bool(term or trunc)

    scalar_sps = _steps_per_second(ours_step, lambda: env.reset(seed=0), 50_000)

    log("training: raytrader VectorTradingEnv (1,024 accounts)")
    n_envs = 1024
    venv = VectorTradingEnv(market, n_envs, cfg, seed=0)
    venv.reset(seed=0)
    actions = rng.integers(0, 3, size=(300, n_envs))
    for a in actions[:20]:
        venv.step(a)
    t0 = time.perf_counter()
    for a in actions[20:]:
        venv.step(a)
    vector_sps = 280 * n_envs / (time.perf_counter() - t0)

    rows = [
        [
            "FinRL 0.3.7 `StockTradingEnv` (pandas row lookup per step), 1 stock",
            f"{finrl_sps:,.0f}",
            "1.0×",
        ],
        [
            "raytrader `TradingEnv` (the kernel, one account)",
            f"{scalar_sps:,.0f}",
            f"{scalar_sps / finrl_sps:,.1f}×",
        ],
        [
            f"raytrader `VectorTradingEnv`, {n_envs:,} accounts per step",
            f"{vector_sps:,.0f}",
            f"{vector_sps / finrl_sps:,.0f}×",
        ],
    ]
    verdicts = [
        Verdict(
            "6. vectorized env steps/s (1 core)",
            f">= {VECTOR_TARGET:,.0f}",
            f"{vector_sps:,.0f}",
            vector_sps >= VECTOR_TARGET,
        ),
        Verdict(
            "6. vectorized env vs FinRL StockTradingEnv",
            f">= {VS_FINRL_TARGET:.0f}×",
            f"{vector_sps / finrl_sps:,.0f}×",
            vector_sps / finrl_sps >= VS_FINRL_TARGET,
        ),
    ]
    return rows, verdicts


def _ppo_rows() -> list[list[str]]:
    import tempfile

    from raytrader.envs import EnvConfig
    from raytrader.training.rl import RLConfig, train_rl

    rows = []
    for runners in (1, 2):
        log(f"training: PPO, {runners} env runner(s)")
        cfg = RLConfig(
            iterations=4,
            checkpoint_every=100,
            num_env_runners=runners,
            train_batch_size=4000,
            minibatch_size=500,
            num_epochs=4,
            env=EnvConfig(episode_length=500),
            output_dir=tempfile.mkdtemp(prefix="bench-ppo-"),
        )
        stamps: list[float] = []

        def stamp(i: int, row: dict[str, float], stamps: list[float] = stamps) -> None:
            stamps.append(time.perf_counter())

        t0 = time.perf_counter()
        result = train_rl(cfg, on_iteration=stamp)
        total = time.perf_counter() - t0
        steps = result.history[-1]["env_steps"] - result.history[0]["env_steps"]
        per_iter = (stamps[-1] - stamps[0]) / (len(stamps) - 1)
        rows.append(
            [
                str(runners),
                f"{steps / (stamps[-1] - stamps[0]):,.0f}",
                fmt_s(per_iter),
                fmt_s(total),
            ]
        )
    return rows


def _oos_rows() -> tuple[list[list[str]], str]:
    """PPO trained on GOOG 2004-2010 (the first 70% of the usable bars), evaluated once on the
    later 30%: the honest out-of-sample table, one run per feature set (same seed, budget, costs
    and bars; the baselines are computed in each run and must agree). Returns the rows and the
    test window."""
    import tempfile

    from raytrader.envs import EnvConfig
    from raytrader.models.rl_policy import greedy_policy
    from raytrader.training.rl import RLConfig, evaluate, load_market, train_rl

    def pct(m: dict[str, float], key: str) -> str:
        return f"{m[key]:+.1%}" if key == "total_return" else f"{m[key]:.1%}"

    rows: list[list[str]] = []
    tables: dict[str, dict[str, dict[str, float]]] = {}
    windows: set[tuple[str, str, int]] = set()
    for feature_set in OOS_FEATURE_SETS:
        log(f"training: PPO on GOOG observing {feature_set}, out-of-sample evaluation")
        cfg = RLConfig(
            data="goog",
            iterations=25,
            checkpoint_every=25,
            train_batch_size=2048,
            minibatch_size=256,
            num_epochs=4,
            env=EnvConfig(feature_set=feature_set, episode_length=256, reward="log_return"),
            mlflow=False,
            output_dir=tempfile.mkdtemp(prefix="bench-oos-"),
        )
        _, test = load_market(cfg)
        idx = test.bars.index
        windows.add((f"{idx[test.first]:%Y-%m-%d}", f"{idx[test.hi - 1]:%Y-%m-%d}", test.n_usable))
        t0 = time.perf_counter()
        result = train_rl(cfg)
        train_s = time.perf_counter() - t0
        table = tables[feature_set] = evaluate(cfg, greedy_policy(result.checkpoint))
        m = table["policy"]
        rows.append(
            [
                f"PPO on `{feature_set}` ({len(cfg.env.feature_names) + 3} inputs)",
                pct(m, "total_return"),
                f"{m['sharpe']:.2f}",
                pct(m, "max_drawdown"),
                f"{int(m.get('num_trades', 0))}",
                fmt_s(train_s),
            ]
        )
    if len(windows) != 1:
        raise RuntimeError(f"the feature sets' runs were tested on different bars: {windows}")
    first, *others = tables.values()
    for other in others:
        for name in ("buy_and_hold", "ma_cross"):
            a, b = first[name], other[name]
            differ = [k for k in a if k not in b or not np.array_equal(a[k], b[k], equal_nan=True)]
            if differ:
                raise RuntimeError(
                    f"{name} differs between the runs in {differ}: same bars and costs expected"
                )
    for name in ("buy_and_hold", "ma_cross"):
        m = first[name]
        label = "buy-and-hold" if name == "buy_and_hold" else "`ma_cross(10, 50)`"
        rows.append(
            [
                label,
                pct(m, "total_return"),
                f"{m['sharpe']:.2f}",
                pct(m, "max_drawdown"),
                f"{int(m.get('num_trades', 0))}",
                "—",
            ]
        )
    (start, end, n) = windows.pop()
    return rows, f"{start} – {end}, {n} bars"


def _asha_rows() -> list[list[str]]:
    import tempfile

    from raytrader.training.tune import SearchConfig, run_search

    rows = []
    for scheduler in ("none", "asha"):
        log(f"training: search, scheduler {scheduler}")
        cfg = SearchConfig.parse(
            {
                "name": f"bench-{scheduler}",
                "strategy": "ma_cross",
                "data": "synthetic:n_bars=400000,timeframe=5m,seed=4,symbol=SYN",
                "space": {
                    "fast": {"kind": "int", "low": 5, "high": 60},
                    "slow": {"kind": "int", "low": 80, "high": 400},
                },
                "num_samples": 16,
                "folds": 6,
                "max_concurrent": 2,
                "scheduler": scheduler,
                "search": "random",
                "seed": 3,
                "mlflow": False,
                "output_dir": tempfile.mkdtemp(prefix="bench-tune-"),
            }
        )
        t0 = time.perf_counter()
        summary = run_search(cfg)
        rows.append(
            [
                scheduler,
                f"{summary['trials']} ({summary['completed']} ran every window)",
                fmt_s(time.perf_counter() - t0),
                f"{summary['best_sharpe']:.3f}",
                str(summary["best_params"]),
            ]
        )
    return rows


def run() -> Section:
    load_start = load_average()
    env_rows, verdicts = _env_rows()
    ppo = _ppo_rows()
    asha = _asha_rows()
    oos, oos_window = _oos_rows()
    body = f"""
Load average at start {load_start}, at end {load_average()}. No GPU in this task: the PPO
learner ran on CPU only (the GPU comparison needs a machine with one).

**Environment steps per second, one core** — GOOG daily bars, random actions, 500-step episodes
reset when done. Each raytrader step runs the kernel (fill at the next open, commission, slippage,
sizing) and builds the 73-value observation; FinRL's step looks its row up in a pandas frame.

{table(["environment", "steps / s", "vs FinRL"], env_rows)}

**PPO (RLlib, new API stack, torch on CPU)** — 4,000 env steps per iteration, 4 epochs of 500-step
minibatches, 64×64 MLP; throughput over iterations 2–4.

{table(["env runners", "env steps / s", "s / iteration", "total (incl. start-up)"], ppo)}

**ASHA vs no scheduler** — the same 16 random configurations of `ma_cross` (seeded search, so
both runs draw the same ones) on 400,000 synthetic 5-minute bars, 6 walk-forward windows, 2 trials
at a time; ASHA stops trials whose running validation Sharpe trails after 1 and 3 windows
(reduction factor 3); only trials that ran every window compete for "best". A rule-strategy
trial's cost is mostly its start-up (data, targets, Tune's
per-trial overhead), not its windows, so stopping it early saves little here; ASHA pays off where
each reported step is expensive (RL iterations).

{table(["scheduler", "trials", "wall time", "best validation Sharpe", "best parameters"], asha)}

**Out of sample: PPO on GOOG** — trained for 25 iterations (51,200 steps) on the first 70% of
GOOG's usable daily bars (2004–2010, random 256-bar episodes, log-return reward, 0.1% commission,
2 bp slippage), then run greedily once over the later 30% ({oos_window}) as one episode and
backtested on the kernel next to buy-and-hold and `ma_cross(10, 50)` on the same bars and costs.
Two runs, identical but for the observation: `bar_features_v1` (70 features, price and cumulative
levels included) and the scale-free `bar_features_v2` (59: ratios to close, log differences, no
levels); both sets warm up in 60 bars, so both runs train and test on the same bars. Seed 0 each:
one seed per set, so a difference between the two rows is one draw, not a measured effect.
Reported as it comes out, whichever wins.

{table(["strategy", "total return", "Sharpe", "max drawdown", "trades", "training"], oos)}
"""
    return Section(NAME, "6. Training (environment, PPO, search)", body, verdicts)
