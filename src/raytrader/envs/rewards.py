"""Reward functions, vectorized over accounts (the scalar env is one account).

Every reward is computed from the kernel's equity marked at each close, so commission and
slippage are always inside it. ``r_t = log(E_t / E_{t-1})`` is the step's log return.

* ``log_return``: ``r_t``.
* ``risk_penalized``: ``r_t - lambda x penalty``; ``volatility`` penalty = population std of the
  episode's last ``risk_window`` log returns (0 until two exist); ``drawdown`` penalty = the
  increase in drawdown this step, ``max(0, DD_t - DD_{t-1})`` with ``DD = 1 - E / max(E)``.
* ``differential_sharpe`` (Moody & Saffell, 1998): with ``A``, ``B`` exponential moving averages
  of ``r`` and ``r^2`` (rate ``eta``, both starting at 0),
  ``D_t = (B_{t-1} dA_t - A_{t-1} dB_t / 2) / (B_{t-1} - A_{t-1}^2)^{3/2}``, ``dA_t = r_t - A_{t-1}``,
  ``dB_t = r_t^2 - B_{t-1}``; ``D_t`` is 0 while the variance term is not positive.
"""

from __future__ import annotations

import numpy as np

from raytrader.envs.config import EnvConfig


class Reward:
    """Per-account reward state over an episode; ``reset(mask)`` restarts the masked accounts."""

    def __init__(self, config: EnvConfig, n: int) -> None:
        self.config = config
        self.n = n
        w = config.risk_window
        self._rets = np.zeros((n, w))
        self._count = np.zeros(n, dtype=np.int64)
        self._peak = np.zeros(n)
        self._dd = np.zeros(n)
        self._a = np.zeros(n)
        self._b = np.zeros(n)

    def reset(self, equity: np.ndarray, mask: np.ndarray | None = None) -> None:
        m = np.ones(self.n, dtype=bool) if mask is None else mask
        self._rets[m] = 0.0
        self._count[m] = 0
        self._peak[m] = equity[m]
        self._dd[m] = 0.0
        self._a[m] = 0.0
        self._b[m] = 0.0

    def __call__(self, prev_equity: np.ndarray, equity: np.ndarray) -> np.ndarray:
        cfg = self.config
        with np.errstate(divide="ignore", invalid="ignore"):
            r = np.log(np.maximum(equity, 1e-12) / np.maximum(prev_equity, 1e-12))
        w = cfg.risk_window
        self._rets[np.arange(self.n), self._count % w] = r
        self._count += 1
        if cfg.reward == "log_return":
            return np.asarray(r, dtype=np.float64)
        if cfg.reward == "risk_penalized":
            if cfg.risk_penalty == "volatility":
                k = np.minimum(self._count, w)
                filled = np.arange(w)[None, :] < k[:, None]
                mean = np.where(filled, self._rets, 0.0).sum(axis=1) / k
                var = np.where(filled, (self._rets - mean[:, None]) ** 2, 0.0).sum(axis=1) / k
                penalty = np.where(k >= 2, np.sqrt(var), 0.0)
            else:
                self._peak = np.maximum(self._peak, equity)
                dd = 1.0 - equity / self._peak
                penalty = np.maximum(dd - self._dd, 0.0)
                self._dd = dd
            return np.asarray(r - cfg.risk_lambda * penalty, dtype=np.float64)
        a, b, eta = self._a, self._b, cfg.dsr_eta
        da, db = r - a, r * r - b
        denom = b - a * a
        with np.errstate(divide="ignore", invalid="ignore"):
            d = np.where(denom > 0.0, (b * da - 0.5 * a * db) / np.power(denom, 1.5), 0.0)
        self._a = a + eta * da
        self._b = b + eta * db
        return np.asarray(d, dtype=np.float64)
