"""The meta ensemble one bar at a time: what the served model and its backtest both run.

:class:`MetaStepper` keeps a small state per symbol and turns each bar's ``bar_features_v1`` row
and the members' targets into one decision with its explanation. The registered model's backtest
replays the bars through the same :meth:`MetaStepper.step` the decision service calls, so the two
agree bar for bar by construction (and the parity test checks it through Kafka and Feast).

Per symbol and bar, in order:

1. **Prices.** A served row has features, not prices. The track record's prices are rebuilt from
   the row: ``close = previous close · exp(logret_1)`` (1.0 at the symbol's first bar) and
   ``open = close / (1 + oc_ratio)``; high and low are the larger and smaller of the two (no
   stops, so the kernel never looks inside the bar). The kernel's costs are proportional, so
   returns on this path equal the returns on the real bars up to rounding (tested against
   :func:`raytrader.meta.dataset.member_returns`).
2. **Members' net returns** from the one kernel (:class:`raytrader.sim.engine.Simulator`, one
   column per member: its targets, next-open fills, the ``SimConfig``'s costs).
3. **Track records** (:class:`Track`, the same statistics as
   :func:`raytrader.meta.dataset.predictor_rows`, updated incrementally) from each member's first
   out-of-sample bar: the ``horizon``-th bar after its training data ended.
4. **Regime**: :class:`raytrader.meta.regimes.RegimeDetector` on the row and the rebuilt close.
5. **Scores** from the registered predictor for the members out of sample, **weights** through
   :func:`raytrader.meta.weights.target_weights` smoothed toward the previous bar's, the members'
   targets **combined** by the one combiner, and optionally sized by fractional **Kelly**.
6. **Drift guard**: each decision's rank IC once its labels close (``horizon`` bars later); every
   ``check_bars`` bars, when the mean of the last ``drift_window`` ICs is below 0 twice running,
   the weights fall back to equal until it is 0 or above again.

A repeated feature time returns the decision already made (idempotent per feature time); an
earlier one is an error. A state that missed bars is caught up by its caller
(:class:`raytrader.meta.model.MetaEnsemble`) from the offline store before it steps.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from raytrader.errors import ConfigError
from raytrader.meta.dataset import REGIME_FEATURES, VOL_HALFLIFE
from raytrader.meta.kelly import EwmaVariance, kelly_size
from raytrader.meta.loop import drift_check
from raytrader.meta.predictors import Predictor
from raytrader.meta.regimes import REGIMES, RegimeConfig, RegimeDetector
from raytrader.meta.weights import WeightConfig, smooth, target_weights
from raytrader.sim.config import SimConfig
from raytrader.strategies.combine import combine

#: the features a bar must carry for the prices the track record is kept on
PRICE_FEATURES = ("logret_1", "oc_ratio")


def _alpha(span: int) -> float:
    return 2.0 / (span + 1.0)


class Track:
    """One member's track-record statistics, bar by bar (``predictor_rows``' definitions)."""

    def __init__(self) -> None:
        self.ewma: dict[int, float] = {5: math.nan, 20: math.nan, 63: math.nan}
        self.returns: deque[float] = deque(maxlen=63)
        self.wins: deque[float] = deque(maxlen=20)
        self.held: deque[float] = deque(maxlen=20)
        self.wealth = 1.0
        self.peak = 1.0
        self.turnover = math.nan
        self.previous_target = 0.0  # the target decided at the bar before (0 before the start)

    def update(self, r: float, target: float, agrees: float) -> dict[str, float]:
        for span in self.ewma:
            a, e = _alpha(span), self.ewma[span]
            self.ewma[span] = r if math.isnan(e) else (1.0 - a) * e + a * r
        self.returns.append(r)
        n = len(self.returns)
        sharpe = 0.0  # as the rolling statistic reads before 20 bars
        if n >= 20:
            values = np.fromiter(self.returns, dtype=np.float64, count=n)
            std = float(values.std())
            sharpe = float(values.mean()) / std if std > 0 else 0.0
        held = self.previous_target != 0.0
        self.held.append(float(held))
        self.wins.append(float(held and r > 0))
        seen = sum(self.held)
        hit = sum(self.wins) / seen if seen > 0 else 0.5
        self.wealth *= 1.0 + r
        self.peak = max(self.peak, self.wealth)
        now = 0.0 if math.isnan(target) else target
        change = abs(now - self.previous_target)
        a = _alpha(20)
        self.turnover = (
            change if math.isnan(self.turnover) else (1 - a) * self.turnover + a * change
        )
        self.previous_target = now
        return {
            "ewma_5": self.ewma[5],
            "ewma_20": self.ewma[20],
            "ewma_63": self.ewma[63],
            "sharpe_63": sharpe,
            "hit_rate_20": hit,
            "drawdown": self.wealth / self.peak - 1.0,
            "turnover_20": self.turnover,
            "target": target,
            "agrees": agrees,
        }


@dataclass(frozen=True)
class MetaSpec:
    """What the registered meta model decides with (its config and its fitted predictor)."""

    members: tuple[str, ...]
    #: per member, the last bar its training saw (None: no training, every bar is out of sample)
    trained_until: tuple[pd.Timestamp | None, ...]
    predictor: Predictor
    predictor_columns: tuple[str, ...]
    weights: WeightConfig
    preset: str
    sim: SimConfig
    periods_per_year: float
    bar: pd.Timedelta
    #: the predictor saw labels closed by this bar
    fitted_until: pd.Timestamp
    regimes: RegimeConfig = field(default_factory=RegimeConfig)
    horizon: int = 5
    check_bars: int = 21
    drift_window: int = 60
    hold_band: float = 0.2
    predictor_version: str = ""


@dataclass
class SymbolState:
    """Everything the meta ensemble remembers about one symbol."""

    simulator: Any  # raytrader.sim.engine.Simulator, one column per member
    equity: np.ndarray
    bars_after: np.ndarray  # per member, bars seen after its training ended
    detector: RegimeDetector
    tracks: list[Track | None]
    time: pd.Timestamp | None = None
    bars: int = 0
    close: float = math.nan
    variance: EwmaVariance = field(default_factory=lambda: EwmaVariance(halflife=VOL_HALFLIFE))
    vol: EwmaVariance = field(default_factory=lambda: EwmaVariance(halflife=VOL_HALFLIFE))
    weights: dict[str, float] = field(default_factory=dict)
    #: decisions awaiting their labels: (bar, wealth of each member then, scores, scale)
    pending: deque[tuple[int, np.ndarray, dict[str, float], float]] = field(default_factory=deque)
    ics: list[float] = field(default_factory=list)
    negative_checks: int = 0
    fallback: bool = False
    last: tuple[dict[str, Any], dict[str, Any]] | None = None
    #: the predictor's input rows at the last bar (one per member out of sample)
    inputs: list[dict[str, Any]] = field(default_factory=list)


def _active_and_label(spec: MetaSpec, state: SymbolState, t: pd.Timestamp) -> np.ndarray:
    """Which members are out of sample at this bar (their first out-of-sample bar is the
    ``horizon``-th bar after their training ended: ``first_out_of_sample_bar``)."""
    opened = t - spec.bar  # feature times are bar closes; training spans name bar opens
    for j, until in enumerate(spec.trained_until):
        if until is None or opened > until:
            state.bars_after[j] += 1
    return np.asarray(state.bars_after > spec.horizon)


class MetaStepper:
    """The per-symbol states and the step (module docstring)."""

    def __init__(self, spec: MetaSpec) -> None:
        self.spec = spec
        self.states: dict[str, SymbolState] = {}

    def reset(self) -> None:
        """Forget every symbol (a validation's smoke decisions must not become history)."""
        self.states.clear()

    def _new_state(self) -> SymbolState:
        from raytrader.sim.engine import Simulator

        k = len(self.spec.members)
        sim = self.spec.sim
        return SymbolState(
            simulator=Simulator(sim, self.spec.periods_per_year, n_columns=k),
            equity=np.full(k, sim.initial_cash),
            tracks=[None] * k,
            bars_after=np.zeros(k, dtype=np.int64),
            detector=RegimeDetector(self.spec.regimes),
        )

    def last_time(self, symbol: str) -> pd.Timestamp | None:
        """The feature time ``symbol``'s state is at (None: never stepped)."""
        state = self.states.get(symbol)
        return None if state is None else state.time

    def step(
        self,
        symbol: str,
        time: pd.Timestamp,
        row: dict[str, float],
        targets: np.ndarray,
        confidences: np.ndarray,
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """One bar of ``symbol``: the decision (``target``, ``confidence``) and its explanation."""
        spec = self.spec
        state = self.states.get(symbol)
        if state is None:
            state = self.states[symbol] = self._new_state()
        if state.time is not None:
            if time == state.time and state.last is not None:
                return state.last
            if time < state.time:
                raise ConfigError(
                    f"{symbol}: the meta ensemble's state is at {state.time}; a row at {time} "
                    "is in its past"
                )
        state.time = time
        state.bars += 1
        logret = float(row["logret_1"])
        oc = float(row["oc_ratio"])
        if not (math.isfinite(logret) and math.isfinite(oc)):
            logret, oc = 0.0, 0.0  # a symbol's first bar: no return yet
        close = 1.0 if math.isnan(state.close) else state.close * math.exp(logret)
        state.close = close
        open_ = close / (1.0 + oc)
        equity = state.simulator.step(open_, max(open_, close), min(open_, close), close, targets)
        state.simulator.forget_trades()
        with np.errstate(divide="ignore", invalid="ignore"):
            r = np.where(state.equity > 0, equity / state.equity - 1.0, 0.0)
        state.equity = equity
        state.variance.update(logret if state.bars > 1 else 0.0)
        state.vol.update(logret if state.bars > 1 else 0.0)
        present = ~np.isnan(targets)
        total = float(np.where(present, targets, 0.0).sum())
        consensus = np.sign(total / max(int(present.sum()), 1))
        agrees = (np.sign(np.nan_to_num(targets)) == consensus).astype(float)
        out_of_sample = _active_and_label(spec, state, time)
        reading = state.detector.update(row, close, time)
        regime_block: dict[str, float] = {
            f"regime_{n}": float(reading.regime == n) for n in REGIMES
        }
        regime_block["regime_confidence"] = float(reading.confidence)
        for name in REGIME_FEATURES:
            regime_block[name] = float(row[name])
        rows: list[dict[str, Any]] = []
        live: list[int] = []
        for j, member in enumerate(spec.members):
            if not out_of_sample[j]:
                continue
            track = state.tracks[j]
            if track is None:
                track = state.tracks[j] = Track()
            features = track.update(float(r[j]), float(targets[j]), float(agrees[j]))
            onehot = {f"member_{m}": float(m == member) for m in spec.members}
            rows.append({"member": member, **features, **regime_block, **onehot})
            live.append(j)
        state.inputs = rows
        self._score_closed(state)
        if state.bars % spec.check_bars == 0:
            self._check_drift(state)
        decision, explanation = self._decide(state, rows, live, targets, confidences)
        explanation.update(
            {
                "regime": reading.regime,
                "regime_confidence": float(reading.confidence),
                "regime_rule": reading.rule,
                "preset": spec.preset,
                "temperature": math.inf if state.fallback else spec.weights.temperature,
                "fallback": state.fallback,
                "predictor": spec.predictor.kind,
                "predictor_version": spec.predictor_version,
                "fitted_until": None
                if spec.fitted_until is None
                else spec.fitted_until.isoformat(),
                "bars_seen": state.bars,
            }
        )
        state.last = (decision, explanation)
        return state.last

    def _decide(
        self,
        state: SymbolState,
        rows: list[dict[str, Any]],
        live: list[int],
        targets: np.ndarray,
        confidences: np.ndarray,
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        spec = self.spec
        cfg = spec.weights
        members: dict[str, dict[str, Any]] = {
            m: {
                "target": _finite(targets[j]),
                "confidence": _finite(confidences[j]),
                "score": None,
                "weight": 0.0,
                "status": "no record yet",
            }
            for j, m in enumerate(spec.members)
        }
        explanation: dict[str, Any] = {"members": members, "binding": [], "kelly": None}
        if len(rows) < cfg.min_active:
            state.weights = {}
            explanation["binding"] = [f"min_active {cfg.min_active}: {len(rows)} out of sample"]
            return {"target": math.nan, "confidence": 0.0}, explanation
        frame = pd.DataFrame(rows).reindex(columns=["member", *spec.predictor_columns])
        scores = np.asarray(spec.predictor.predict(frame), dtype=np.float64)
        scores = np.where(np.isfinite(scores), scores, 0.0)
        names = [spec.members[j] for j in live]
        weighting = cfg.model_copy(update={"temperature": math.inf}) if state.fallback else cfg
        chosen = target_weights(scores, weighting)
        previous = np.array([state.weights.get(m, 0.0) for m in names])
        w = smooth(previous if state.weights else None, chosen.weights, cfg.smoothing)
        state.weights = dict(zip(names, w.tolist(), strict=True))
        vol = math.sqrt(state.vol.value) if state.vol.value >= 0 else math.nan
        state.pending.append(
            (state.bars, self._wealth(state), dict(zip(names, scores.tolist(), strict=True)), vol)
        )
        for i, m in enumerate(names):
            status = "active" if chosen.active[i] else "inactive"
            if chosen.capped[i]:
                status = "capped"
            elif chosen.floored[i]:
                status = "floored"
            members[m].update(score=float(scores[i]), weight=float(w[i]), status=status)
        binding = []
        if chosen.capped.any():
            binding.append(f"cap {cfg.cap}")
        if chosen.floored.any():
            binding.append(f"floor {cfg.floor}")
        if int(chosen.active.sum()) == cfg.min_active and len(names) > cfg.min_active:
            binding.append(f"min_active {cfg.min_active}")
        explanation["binding"] = binding
        tg = targets[live]
        cf = confidences[live]
        done = combine(tg.reshape(1, -1), "weighted", weights=w, confidences=cf.reshape(1, -1))
        combined = float(done.target[0])
        confidence = float(done.confidence[0]) if math.isfinite(combined) else 0.0
        if math.isfinite(combined) and cfg.kelly is not None:
            present = ~np.isnan(tg)
            variance = state.variance.value
            score = float((w[present] * scores[present]).sum() / w[present].sum())
            edge = score * vol * math.sqrt(spec.horizon) / spec.horizon
            sized = kelly_size(combined, edge, variance, cfg.kelly)
            explanation["kelly"] = {
                "members_target": combined,
                "edge": sized.edge,
                "variance": sized.variance,
                "kelly": sized.kelly,
                "fraction": cfg.kelly.fraction,
                "bound": sized.bound,
            }
            combined = sized.position
        return {"target": combined, "confidence": confidence}, explanation

    @staticmethod
    def _wealth(state: SymbolState) -> np.ndarray:
        return np.array([t.wealth if t is not None else math.nan for t in state.tracks])

    def _score_closed(self, state: SymbolState) -> None:
        """The rank IC of the decision made ``horizon`` bars ago, now that its labels closed."""
        h = self.spec.horizon
        while state.pending and state.pending[0][0] + h <= state.bars:
            bar, wealth_then, scores, vol = state.pending.popleft()
            if bar + h != state.bars or not (vol > 0):
                continue
            now = self._wealth(state)
            pairs = []
            for m, score in scores.items():
                j = self.spec.members.index(m)
                label = (now[j] / wealth_then[j] - 1.0) / (vol * math.sqrt(h))
                if math.isfinite(label):
                    pairs.append((score, label))
            if len(pairs) >= 2:
                ic = _rank_correlation(np.array(pairs))
                if not math.isnan(ic):
                    state.ics.append(ic)
                    del state.ics[: -self.spec.drift_window]  # only the window is ever read

    def _check_drift(self, state: SymbolState) -> None:
        state.negative_checks, state.fallback = drift_check(
            state.ics, self.spec.drift_window, state.negative_checks, state.fallback
        )


def _average_ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks, ties sharing their average (a handful of members: pairwise comparison)."""
    below = (x[:, None] > x[None, :]).sum(axis=1)
    equal = (x[:, None] == x[None, :]).sum(axis=1)
    return np.asarray(below + (equal + 1) / 2.0, dtype=np.float64)


def _rank_correlation(pairs: np.ndarray) -> float:
    """Spearman's correlation of the two columns (average ranks for ties); NaN when either column
    is constant."""
    if np.ptp(pairs[:, 0]) == 0.0 or np.ptp(pairs[:, 1]) == 0.0:
        return math.nan
    a, b = _average_ranks(pairs[:, 0]), _average_ranks(pairs[:, 1])
    a, b = a - a.mean(), b - b.mean()
    return float((a * b).sum() / math.sqrt((a * a).sum() * (b * b).sum()))


def _finite(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


__all__ = ["PRICE_FEATURES", "MetaSpec", "MetaStepper", "SymbolState", "Track"]
