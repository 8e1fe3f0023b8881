"""Performance predictors behind one interface, and how they are scored and walked forward.

Every predictor maps :func:`raytrader.meta.dataset.predictor_rows` rows to a score per row (higher:
the member is expected to do better over the label's horizon); only the ranking across members at
a bar matters to the weights.

``ewma``   the member's 20-bar EWMA net return — its track record alone, no fit (Hedge-like).
``table``  the mean label per (regime, member), shrunk toward the member's mean with a prior of
           ``prior_rows`` rows: ``(n·mean_rm + prior·mean_m) / (n + prior)``.
``ridge``  ridge regression on the features (median-imputed, standardized).
``hgb``    scikit-learn's histogram gradient boosting (missing values natively).
``mlp``    a small torch network (2 × 32 ReLU, dropout 0.1, AdamW with weight decay 1e-3, early
           stopping on the last 20 % of the training rows in time), the mean of ``seeds`` fits.

Scores (:func:`score_predictions`): at each bar with at least two members' labels, the Spearman
correlation of predictions and labels (the rank IC); the mean IC with a Newey–West t-statistic
(lags: the label horizon, since overlapping labels correlate), and the top-1 hit rate (the
predicted best member is the realized best).

:func:`walk_forward` refits every ``refit_bars`` bars on the rows whose labels had closed by then
(``label_time`` at or before the refit bar — the purge) and predicts the rows up to the next refit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import numpy as np
import pandas as pd

from raytrader.errors import ConfigError
from raytrader.meta.regimes import REGIMES

Kind = Literal["ewma", "table", "ridge", "hgb", "mlp"]
KINDS: tuple[Kind, ...] = ("ewma", "table", "ridge", "hgb", "mlp")
NOT_FEATURES = ("time", "member", "label", "label_time")


def feature_columns(rows: pd.DataFrame) -> list[str]:
    return [c for c in rows.columns if c not in NOT_FEATURES]


class Predictor(Protocol):
    kind: str

    def fit(self, rows: pd.DataFrame) -> Predictor: ...

    def predict(self, rows: pd.DataFrame) -> np.ndarray: ...


class EwmaPredictor:
    kind = "ewma"

    def fit(self, rows: pd.DataFrame) -> EwmaPredictor:
        return self

    def predict(self, rows: pd.DataFrame) -> np.ndarray:
        return rows["ewma_20"].fillna(0.0).to_numpy(dtype=np.float64)


def _regime_of(rows: pd.DataFrame) -> np.ndarray:
    block = rows[[f"regime_{r}" for r in REGIMES]].to_numpy(dtype=np.float64)
    named = np.asarray(REGIMES, dtype=object)[block.argmax(axis=1)]
    return np.where(block.max(axis=1) > 0, named, "none")


class TablePredictor:
    kind = "table"

    def __init__(self, prior_rows: float = 50.0) -> None:
        self.prior_rows = prior_rows
        self.member_mean: dict[str, float] = {}
        self.cell: dict[tuple[str, str], tuple[float, int]] = {}
        self.overall = 0.0

    def fit(self, rows: pd.DataFrame) -> TablePredictor:
        frame = pd.DataFrame(
            {
                "member": rows["member"].to_numpy(),
                "regime": _regime_of(rows),
                "label": rows["label"].to_numpy(),
            }
        )
        self.overall = float(frame["label"].mean()) if len(frame) else 0.0
        means = frame.groupby("member")["label"].mean()
        self.member_mean = {str(m): float(v) for m, v in means.items()}
        cells = frame.groupby(["member", "regime"])["label"].agg(["mean", "count"])
        self.cell = {
            (str(m), str(r)): (float(mean), int(count))
            for (m, r), mean, count in zip(cells.index, cells["mean"], cells["count"], strict=True)
        }
        return self

    def predict(self, rows: pd.DataFrame) -> np.ndarray:
        out = np.empty(len(rows))
        for i, (member, regime) in enumerate(zip(rows["member"], _regime_of(rows), strict=True)):
            prior = self.member_mean.get(member, self.overall)
            mean, n = self.cell.get((member, regime), (prior, 0))
            out[i] = (n * mean + self.prior_rows * prior) / (n + self.prior_rows)
        return out


class SklearnPredictor:
    def __init__(self, kind: Literal["ridge", "hgb"], seed: int = 0) -> None:
        self.kind: str = kind
        self.seed = seed
        self.model: Any = None
        self.columns: list[str] = []

    def _make(self) -> Any:
        from sklearn.ensemble import HistGradientBoostingRegressor
        from sklearn.impute import SimpleImputer
        from sklearn.linear_model import Ridge
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        if self.kind == "ridge":
            return make_pipeline(
                SimpleImputer(strategy="median", keep_empty_features=True),
                StandardScaler(),
                Ridge(alpha=10.0),
            )
        return HistGradientBoostingRegressor(
            max_iter=200, learning_rate=0.05, max_leaf_nodes=15, min_samples_leaf=50,
            l2_regularization=1.0, early_stopping=False, random_state=self.seed,
        )  # fmt: skip

    def fit(self, rows: pd.DataFrame) -> SklearnPredictor:
        self.columns = feature_columns(rows)
        self.model = self._make().fit(
            rows[self.columns].to_numpy(np.float64), rows["label"].to_numpy()
        )
        return self

    def predict(self, rows: pd.DataFrame) -> np.ndarray:
        return np.asarray(
            self.model.predict(rows[self.columns].to_numpy(np.float64)), dtype=np.float64
        )


class MlpPredictor:
    kind = "mlp"

    def __init__(self, seed: int = 0, seeds: int = 5, epochs: int = 200, hidden: int = 32) -> None:
        self.seed = seed
        self.seeds = seeds
        self.epochs = epochs
        self.hidden = hidden
        self.columns: list[str] = []
        self.center = np.zeros(0)
        self.scale = np.ones(0)
        self.nets: list[Any] = []

    def _matrix(self, rows: pd.DataFrame) -> np.ndarray:
        x = rows[self.columns].to_numpy(np.float64)
        x = (x - self.center) / self.scale
        return np.nan_to_num(x, nan=0.0)

    def fit(self, rows: pd.DataFrame) -> MlpPredictor:
        import torch

        self.columns = feature_columns(rows)
        raw = rows[self.columns].to_numpy(np.float64)
        self.center = np.nan_to_num(np.nanmedian(raw, axis=0), nan=0.0)
        spread = np.nanstd(raw, axis=0)
        self.scale = np.where(np.isfinite(spread) & (spread > 0), spread, 1.0)
        x = torch.tensor(self._matrix(rows), dtype=torch.float32)
        y = torch.tensor(rows["label"].to_numpy(np.float64), dtype=torch.float32).reshape(-1, 1)
        cut = max(1, int(len(rows) * 0.8))  # rows are in time order: validate on the latest 20 %
        self.nets = []
        # the ensemble's networks: distinct torch seeds per (seed, network), so two seeds of the
        # predictor are two independent draws
        torch_seeds = np.random.SeedSequence(self.seed).generate_state(self.seeds)
        for torch_seed in torch_seeds:
            torch.manual_seed(int(torch_seed))
            net = torch.nn.Sequential(
                torch.nn.Linear(x.shape[1], self.hidden), torch.nn.ReLU(), torch.nn.Dropout(0.1),
                torch.nn.Linear(self.hidden, self.hidden), torch.nn.ReLU(), torch.nn.Dropout(0.1),
                torch.nn.Linear(self.hidden, 1),
            )  # fmt: skip
            optimizer = torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=1e-3)
            best, best_state, patience = math.inf, None, 0
            for _ in range(self.epochs):
                net.train()
                optimizer.zero_grad()
                loss = torch.nn.functional.mse_loss(net(x[:cut]), y[:cut])
                loss.backward()  # type: ignore[no-untyped-call]  # torch leaves it unannotated
                optimizer.step()
                net.eval()
                with torch.no_grad():
                    held = (
                        float(torch.nn.functional.mse_loss(net(x[cut:]), y[cut:]))
                        if cut < len(x)
                        else float(loss)
                    )
                if held < best - 1e-6:
                    best, patience = held, 0
                    best_state = {k: v.clone() for k, v in net.state_dict().items()}
                else:
                    patience += 1
                    if patience >= 20:
                        break
            if best_state is not None:
                net.load_state_dict(best_state)
            net.eval()
            self.nets.append(net)
        return self

    def predict(self, rows: pd.DataFrame) -> np.ndarray:
        import torch

        x = torch.tensor(self._matrix(rows), dtype=torch.float32)
        with torch.no_grad():
            out = np.mean([net(x).numpy()[:, 0] for net in self.nets], axis=0)
        return np.asarray(out, dtype=np.float64)


def make_predictor(kind: str, seed: int = 0) -> Predictor:
    if kind == "ewma":
        return EwmaPredictor()
    if kind == "table":
        return TablePredictor()
    if kind in ("ridge", "hgb"):
        return SklearnPredictor("ridge" if kind == "ridge" else "hgb", seed)
    if kind == "mlp":
        return MlpPredictor(seed)
    raise ConfigError(f"unknown predictor {kind!r}; choose one of {list(KINDS)}")


@dataclass(frozen=True)
class PredictorScore:
    kind: str
    ic: float  # mean rank IC across bars
    ic_t: float  # Newey-West t-statistic of the mean IC
    hit_rate: float  # top-1
    bars: int


def _newey_west_t(x: np.ndarray, lags: int) -> float:
    n = len(x)
    if n < 3:
        return math.nan
    d = x - x.mean()
    var = float(d @ d) / n
    for lag in range(1, min(lags, n - 1) + 1):
        var += 2.0 * (1.0 - lag / (lags + 1)) * float(d[lag:] @ d[:-lag]) / n
    return float(x.mean() / math.sqrt(var / n)) if var > 0 else math.nan


def score_predictions(
    rows: pd.DataFrame, predictions: np.ndarray, kind: str, lags: int
) -> PredictorScore:
    """Rank IC, its Newey–West t-statistic and the top-1 hit rate over the bars of ``rows`` with
    at least two members' closed labels."""
    frame = pd.DataFrame(
        {"time": rows["time"].to_numpy(), "p": predictions, "y": rows["label"].to_numpy()}
    )
    frame = frame[frame["y"].notna() & np.isfinite(frame["p"])]
    ics, hits = [], []
    for _, bar in frame.groupby("time", sort=True):
        if len(bar) < 2 or bar["y"].nunique() < 2:
            continue
        rho = bar["p"].rank().corr(bar["y"].rank())
        ics.append(0.0 if not np.isfinite(rho) else float(rho))
        hits.append(float(bar["y"].iloc[int(np.argmax(bar["p"].to_numpy()))] == bar["y"].max()))
    ic = np.asarray(ics)
    return PredictorScore(
        kind=kind,
        ic=float(ic.mean()) if len(ic) else math.nan,
        ic_t=_newey_west_t(ic, lags),
        hit_rate=float(np.mean(hits)) if hits else math.nan,
        bars=len(ic),
    )


def closed_rows(rows: pd.DataFrame, at: pd.Timestamp) -> pd.DataFrame:
    """The rows a fit at bar ``at`` may learn from: labels closed at or before it (the purge)."""
    closed = (pd.DatetimeIndex(rows["label_time"]) <= at) & rows["label"].notna().to_numpy()
    return rows[closed]


def walk_forward(
    rows: pd.DataFrame, kind: str, refit_bars: int, min_rows: int = 200, seed: int = 0
) -> np.ndarray:
    """Out-of-sample predictions for ``rows``: refit every ``refit_bars`` bars on
    :func:`closed_rows` at the refit bar, predict up to the next refit; NaN while fewer than
    ``min_rows`` rows had closed."""
    if refit_bars < 1:
        raise ConfigError(f"refit_bars must be >= 1, got {refit_bars}")
    times = pd.DatetimeIndex(rows["time"])
    bars = times.unique().sort_values()
    out = np.full(len(rows), np.nan)
    for start in range(0, len(bars), refit_bars):
        refit = bars[start]
        block = times >= refit
        if start + refit_bars < len(bars):
            block &= times < bars[start + refit_bars]
        train = closed_rows(rows, refit)
        if len(train) < min_rows:
            continue
        chosen = np.asarray(block)
        out[chosen] = make_predictor(kind, seed).fit(train).predict(rows[chosen])
    return out
