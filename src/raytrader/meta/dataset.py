"""The performance predictor's rows: one per (bar, member), what is known at the bar's close, and
the label that closes ``horizon`` bars later.

Each member's net return per bar comes from the one kernel (:func:`raytrader.backtest.engine.
run_targets`: its own targets alone, next-open fills, the ``SimConfig``'s costs), so a track record
is what the member would have earned, not a target × return approximation. A member's rows start
at its first out-of-sample bar (:mod:`raytrader.meta.track_record`), and every track-record
statistic starts from zero there: nothing before it reaches the meta-learner.

Features at bar t (all from bars up to t):

* the member's track record: EWMAs of its net return over 5, 20 and 63 bars, its trailing
  63-bar Sharpe (per bar), its 20-bar hit rate (share of bars with a positive net return among
  those it held a position into, decided the bar before), its drawdown from its running peak,
  its turnover (20-bar EWMA of ``|Δtarget|``), its current target, and whether it agrees in sign
  with the members' mean target;
* the regime (:mod:`raytrader.meta.regimes`): one indicator per regime and the reading's
  confidence, plus ``adx_14``, ``natr_14``, ``hist_vol_60``, ``bb_width`` and ``ret_20``;
* the member, one indicator each (one model shared across members).

The label: the member's net return over the next ``horizon`` bars (t+1 … t+horizon, its own path),
divided by ``vol · √horizon`` with ``vol`` a 20-bar EWMA of the asset's squared 1-bar log return
known at t (a volatility-scaled score). ``label_time`` is the bar it closes on; rows whose label
has not closed (the last ``horizon`` bars) have a NaN label.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from raytrader.backtest.engine import run_targets
from raytrader.backtest.metrics import equity_returns
from raytrader.data import Bars
from raytrader.errors import ConfigError
from raytrader.meta.regimes import REGIMES
from raytrader.meta.track_record import MemberTraining, check_track_record, first_out_of_sample_bar
from raytrader.sim.config import SimConfig

REGIME_FEATURES = ("adx_14", "natr_14", "hist_vol_60", "bb_width", "ret_20")
TRACK_FEATURES = (
    "ewma_5",
    "ewma_20",
    "ewma_63",
    "sharpe_63",
    "hit_rate_20",
    "drawdown",
    "turnover_20",
    "target",
    "agrees",
)
VOL_HALFLIFE = 20


def _ewma(values: np.ndarray, span: int) -> np.ndarray:
    """EWMA with ``alpha = 2 / (span + 1)`` from the first finite value, NaN before it."""
    return np.asarray(pd.Series(values).ewm(span=span, adjust=False, ignore_na=True).mean())


def member_returns(
    bars: Bars, targets: pd.DataFrame, config: SimConfig | None = None
) -> pd.DataFrame:
    """Each member's net return per bar on the kernel (columns as ``targets``)."""
    if not targets.index.equals(bars.index):
        raise ConfigError(
            f"member targets must be indexed like the {len(bars)} bars of {bars.symbol}"
        )
    cfg = config or SimConfig()
    out, _ = run_targets(bars, targets.to_numpy(dtype=np.float64), cfg, positions=False)
    returns = equity_returns(out.equity, cfg.initial_cash)
    return pd.DataFrame(returns, index=bars.index, columns=targets.columns)


def _track(
    returns: np.ndarray, targets: np.ndarray, agrees: np.ndarray, start: int
) -> dict[str, np.ndarray]:
    """The track-record features of one member, from bar ``start`` on (NaN before)."""
    n = len(returns)
    out = {name: np.full(n, np.nan) for name in TRACK_FEATURES}
    r = returns[start:]
    t = np.nan_to_num(targets[start:], nan=0.0)
    series = pd.Series(r)
    for span in (5, 20, 63):
        out[f"ewma_{span}"][start:] = _ewma(r, span)
    mean = series.rolling(63, min_periods=20).mean()
    std = series.rolling(63, min_periods=20).std(ddof=0)
    out["sharpe_63"][start:] = np.where(std > 0, mean / std.where(std > 0, 1.0), 0.0)
    # bar i's return comes from the target decided at i - 1 (filled at bar i's open)
    held = np.concatenate(([0.0], t[:-1])) != 0.0
    wins = pd.Series((r > 0) & held).astype(float).rolling(20, min_periods=1).sum()
    seen = pd.Series(held).astype(float).rolling(20, min_periods=1).sum()
    out["hit_rate_20"][start:] = np.where(seen > 0, wins / seen.where(seen > 0, 1.0), 0.5)
    wealth = np.cumprod(1.0 + r)
    peak = np.maximum.accumulate(np.maximum(wealth, 1.0))  # the start's wealth, 1, is a peak
    out["drawdown"][start:] = wealth / peak - 1.0
    change = np.abs(np.diff(t, prepend=0.0))
    out["turnover_20"][start:] = _ewma(change, 20)
    out["target"][start:] = targets[start:]
    out["agrees"][start:] = agrees[start:]
    return out


def predictor_rows(
    bars: Bars,
    features: pd.DataFrame,
    regimes: pd.DataFrame,
    targets: pd.DataFrame,
    trainings: Mapping[str, MemberTraining],
    horizon: int,
    config: SimConfig | None = None,
) -> pd.DataFrame:
    """The rows of every member from its first out-of-sample bar (module docstring): columns
    ``time``, ``member``, the features, ``label`` and ``label_time``."""
    if horizon < 1:
        raise ConfigError(f"the label horizon must be >= 1 bar, got {horizon}")
    for frame, what in ((features, "features"), (regimes, "regimes")):
        if not frame.index.equals(bars.index):
            raise ConfigError(f"{what} must be indexed like the {len(bars)} bars of {bars.symbol}")
    missing = [m for m in targets.columns if m not in trainings]
    if missing:
        raise ConfigError(f"no training span for member(s) {missing}")
    members: Sequence[str] = list(targets.columns)
    returns = member_returns(bars, targets, config)
    target_values = targets.to_numpy(dtype=np.float64)
    present = ~np.isnan(target_values)
    total = np.where(present, target_values, 0.0).sum(axis=1)
    consensus = np.sign(total / np.maximum(present.sum(axis=1), 1))  # 0 with no member present
    close = bars.column("close")
    log_r = np.concatenate(([0.0], np.diff(np.log(close))))
    vol = np.sqrt(np.asarray(pd.Series(log_r**2).ewm(halflife=VOL_HALFLIFE, adjust=False).mean()))
    n = len(bars)
    regime_block = {
        f"regime_{name}": (regimes["regime"] == name).to_numpy(float) for name in REGIMES
    }
    regime_block["regime_confidence"] = regimes["confidence"].to_numpy(dtype=np.float64)
    for name in REGIME_FEATURES:
        regime_block[name] = features[name].to_numpy(dtype=np.float64)
    frames = []
    for j, member in enumerate(members):
        first = first_out_of_sample_bar(trainings[member], bars.index, horizon)
        if first is None:
            continue
        start = int(bars.index.searchsorted(first))
        r = returns[member].to_numpy()
        agrees = (np.sign(np.nan_to_num(target_values[:, j])) == consensus).astype(float)
        track = _track(r, target_values[:, j], agrees, start)
        label = np.full(n, np.nan)
        if n - horizon > start:
            growth = np.cumprod(1.0 + r[start:])
            ahead = growth[horizon:] / growth[:-horizon] - 1.0
            scale = vol[start : n - horizon] * np.sqrt(horizon)
            label[start : n - horizon] = np.where(
                scale > 0, ahead / np.where(scale > 0, scale, 1.0), np.nan
            )
        rows = pd.DataFrame(
            {
                "time": bars.index[start:],
                "member": member,
                **{k: v[start:] for k, v in track.items()},
                **{k: v[start:] for k, v in regime_block.items()},
                **{f"member_{m}": float(m == member) for m in members},
                "label": label[start:],
                "label_time": _label_times(bars.index, start, horizon),
            }
        )
        check_track_record(trainings[member], pd.DatetimeIndex(rows["time"]), bars.index, horizon)
        frames.append(rows)
    if not frames:
        raise ConfigError("no member has an out-of-sample bar in these bars")
    return pd.concat(frames, ignore_index=True).sort_values(["time", "member"], kind="stable")


def _label_times(index: pd.DatetimeIndex, start: int, horizon: int) -> pd.DatetimeIndex:
    """The bar each row's label closes on (NaT where it has not)."""
    closed = list(index[start + horizon :])
    return pd.DatetimeIndex(closed + [pd.NaT] * min(horizon, len(index) - start), tz=index.tz)
