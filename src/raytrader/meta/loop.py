"""The meta ensemble over time: every bar its weights from the current predictor, every
``refit_bars`` bars a gated refit, and a drift guard that falls back to equal weight.

At each bar t, in order:

1. **Refit** (every ``refit_bars`` bars, once ``min_rows`` labels have closed): a candidate is
   fitted on the rows closed at the start of the most recent held-out slice (the last
   ``refit_bars`` bars of closed labels); it replaces the current predictor only if its rank IC on
   that slice is at least the current one's minus ``gate_tolerance``, and is then refitted on
   every row closed at t. The first fit has nothing to beat.
2. **Drift guard**: the rank IC of the predictor in use, on each bar whose labels have closed;
   when its mean over the last ``drift_window`` such bars is below 0 at two successive refits, the
   weights fall back to equal (temperature ∞) until a refit sees it at 0 or above again.
3. **Weights**: the predictor's scores of the members with a row at t (those out of sample)
   through :func:`raytrader.meta.weights.target_weights`, smoothed toward the previous weights
   (a member new to the set starts from 0).
4. **Target**: the members' targets combined with those weights by the one combiner
   (:func:`raytrader.strategies.combine.combine`, ``weighted``: a NaN target is masked and the
   others renormalized), optionally sized by fractional Kelly on the predicted edge.

Everything at t uses rows of bars up to t and labels closed by t, so the loop is causal; a rerun
with the same inputs gives the same weights (the predictors are seeded).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from pydantic import Field

from raytrader.config import StrictConfig
from raytrader.errors import ConfigError
from raytrader.meta.dataset import VOL_HALFLIFE
from raytrader.meta.kelly import EwmaVariance, kelly_size
from raytrader.meta.predictors import (
    Kind,
    Predictor,
    closed_rows,
    make_predictor,
    score_predictions,
)
from raytrader.meta.weights import WeightConfig, preset, smooth, target_weights
from raytrader.strategies.combine import combine


class MetaConfig(StrictConfig):
    predictor: Kind = "table"
    preset: str = "balanced"
    weights: WeightConfig | None = None  # overrides the preset when set
    refit_bars: int = Field(21, ge=1)
    min_rows: int = Field(200, ge=1)
    gate_tolerance: float = Field(0.01, ge=0)
    drift_window: int = Field(60, ge=2)
    horizon: int = Field(5, ge=1)
    seed: int = 0

    def weight_config(self) -> WeightConfig:
        return self.weights if self.weights is not None else preset(self.preset)


@dataclass
class _State:
    predictor: Predictor | None = None
    version: int = 0
    fallback: bool = False
    negative_refits: int = 0
    weights: dict[str, float] = field(default_factory=dict)
    ics: list[float] = field(default_factory=list)
    decisions: dict[pd.Timestamp, dict[str, float]] = field(default_factory=dict)


@dataclass(frozen=True)
class MetaRun:
    """Per bar: the target, each member's weight, the predictor version in use, the fallback
    flag; and the refits (time, accepted, candidate IC, current IC)."""

    frame: pd.DataFrame
    weights: pd.DataFrame
    refits: pd.DataFrame


def _slice_ic(predictor: Predictor, rows: pd.DataFrame, horizon: int) -> float:
    if rows.empty:
        return math.nan
    score = score_predictions(rows, predictor.predict(rows), "gate", lags=horizon)
    return score.ic


def run_meta(
    rows: pd.DataFrame, targets: pd.DataFrame, config: MetaConfig, close: pd.Series | None = None
) -> MetaRun:
    """The meta ensemble over the bars of ``targets`` (rows: :func:`predictor_rows` of those
    members). With Kelly in the weight config, ``close`` (the asset's closes, indexed like
    ``targets``) gives the variance and the edge's scale."""
    weight_config = config.weight_config()
    kelly = weight_config.kelly
    times = pd.DatetimeIndex(targets.index)
    label_times = pd.DatetimeIndex(rows["label_time"])
    close_index = {t: i for i, t in enumerate(times)}
    state = _State()
    out_target = np.full(len(times), np.nan)
    out_version = np.zeros(len(times), dtype=np.int64)
    out_fallback = np.zeros(len(times), dtype=bool)
    weight_rows: list[dict[str, float]] = []
    refits: list[dict[str, object]] = []
    variance = EwmaVariance(halflife=VOL_HALFLIFE) if kelly is not None else None
    if kelly is not None and (close is None or not close.index.equals(times)):
        raise ConfigError("Kelly sizing needs the asset's closes, indexed like the targets")
    log_r = (
        np.concatenate(([0.0], np.diff(np.log(close.to_numpy(np.float64)))))
        if close is not None
        else None
    )
    by_time = {t: rows.iloc[idx] for t, idx in rows.groupby("time", sort=False).indices.items()}
    for i, t in enumerate(times):
        if variance is not None and log_r is not None:
            variance.update(float(log_r[i]))
        if i % config.refit_bars == 0:
            _refit(rows, label_times, t, i, times, config, state, refits)
        _score_closed(rows, label_times, t, state)
        today = by_time.get(t)
        weights: dict[str, float] = {}
        scores = np.zeros(0)
        if (
            today is not None
            and state.predictor is not None
            and len(today) >= weight_config.min_active
        ):
            scores = state.predictor.predict(today)
            state.decisions[t] = dict(
                zip(today["member"].astype(str), scores.tolist(), strict=True)
            )
            cfg = (
                weight_config.model_copy(update={"temperature": math.inf})
                if state.fallback
                else weight_config
            )
            target = target_weights(scores, cfg).weights
            members = [str(m) for m in today["member"]]
            previous = np.array([state.weights.get(m, 0.0) for m in members])
            smoothed = smooth(previous if state.weights else None, target, weight_config.smoothing)
            weights = dict(zip(members, smoothed.tolist(), strict=True))
            state.weights = weights
        elif today is None or state.predictor is None:
            state.weights = {}
        weight_rows.append(weights)
        out_version[i] = state.version
        out_fallback[i] = state.fallback
        if weights:
            t_row = targets.iloc[close_index[t]]
            w = np.array([weights[m] for m in weights])
            tg = np.array([t_row[m] for m in weights], dtype=np.float64)
            present = ~np.isnan(tg)
            combined = float(combine(tg.reshape(1, -1), "weighted", weights=w).target[0])
            if not math.isnan(combined):
                if kelly is not None and variance is not None:
                    # the scores are horizon-bar returns over vol·√horizon: back to a 1-bar edge
                    vol = math.sqrt(variance.value) if variance.value >= 0 else math.nan
                    score = float((w[present] * scores[present]).sum() / w[present].sum())
                    edge = score * vol * math.sqrt(config.horizon) / config.horizon
                    combined = kelly_size(combined, edge, variance.value, kelly).position
                out_target[i] = combined
    weights_frame = pd.DataFrame(weight_rows, index=times, columns=list(targets.columns)).fillna(
        0.0
    )
    frame = pd.DataFrame(
        {"target": out_target, "predictor_version": out_version, "fallback": out_fallback},
        index=times,
    )
    return MetaRun(frame=frame, weights=weights_frame, refits=pd.DataFrame(refits))


def _refit(
    rows: pd.DataFrame,
    label_times: pd.DatetimeIndex,
    t: pd.Timestamp,
    i: int,
    times: pd.DatetimeIndex,
    config: MetaConfig,
    state: _State,
    refits: list[dict[str, object]],
) -> None:
    closed = closed_rows(rows, t)
    if len(closed) < config.min_rows:
        return
    slice_start = times[max(0, i - config.refit_bars)]
    held_out = closed[pd.DatetimeIndex(closed["label_time"]) > slice_start]
    candidate_ic = current_ic = math.nan
    accepted = True
    if state.predictor is not None:
        earlier = closed_rows(rows, slice_start)
        if len(earlier) >= config.min_rows:
            candidate = make_predictor(config.predictor, config.seed).fit(earlier)
            candidate_ic = _slice_ic(candidate, held_out, config.horizon)
            current_ic = _slice_ic(state.predictor, held_out, config.horizon)
            accepted = not (candidate_ic < current_ic - config.gate_tolerance)
    if accepted:
        state.predictor = make_predictor(config.predictor, config.seed).fit(closed)
        state.version += 1
    # the drift guard looks at the predictor in use over its recent decisions
    state.negative_refits, state.fallback = drift_check(
        state.ics, config.drift_window, state.negative_refits, state.fallback
    )
    refits.append(
        {
            "time": t,
            "accepted": accepted,
            "candidate_ic": candidate_ic,
            "current_ic": current_ic,
            "version": state.version,
            "fallback": state.fallback,
        }
    )


def drift_check(ics: list[float], window: int, negatives: int, fallback: bool) -> tuple[int, bool]:
    """One check of the drift guard: the count of successive checks whose mean rank IC over the
    last ``window`` closed decisions was below 0, and whether the weights fall back to equal
    (from the second such check until a check at 0 or above)."""
    recent = ics[-window:]
    if len(recent) < window // 2 or float(np.mean(recent)) >= 0.0:
        return 0, False
    negatives += 1
    return negatives, fallback or negatives >= 2


def _score_closed(
    rows: pd.DataFrame, label_times: pd.DatetimeIndex, t: pd.Timestamp, state: _State
) -> None:
    """The rank IC of the decisions whose labels closed at t, with the scores given then."""
    just = rows[label_times == t]
    if len(just) < 2:
        return
    decided = state.decisions.pop(pd.Timestamp(just["time"].iloc[0]), None)
    if decided is None:
        return
    labels = dict(zip(just["member"].astype(str), just["label"], strict=True))
    pairs = [(score, labels[m]) for m, score in decided.items() if m in labels]
    if len(pairs) >= 2:
        frame = pd.DataFrame(pairs, columns=["p", "y"])
        if frame["y"].nunique() >= 2:
            ic = frame["p"].rank().corr(frame["y"].rank())
            if not math.isnan(ic):
                state.ics.append(float(ic))
