"""The probabilistic and deflated Sharpe ratio, against the paper's worked example."""

from __future__ import annotations

import numpy as np
import pytest

from raytrader.backtest.deflated import (
    deflated_sharpe_ratio,
    expected_max_sharpe,
    periodic_stats,
    probabilistic_sharpe_ratio,
)


def test_deflated_sharpe_ratio_matches_the_papers_worked_example() -> None:
    """Bailey & López de Prado (2014), section "A numerical example": N = 100 trials whose
    annualized Sharpes vary with V = 1/2, a best annualized Sharpe of 2.5 over T = 1250 daily
    returns with skewness -3 and kurtosis 10 → SR0 ≈ 0.1132 per day, DSR ≈ 0.9004."""
    days = 250  # the paper's annualization
    variance = 0.5 / days  # per-day Sharpe variance: annualized Sharpe = daily x sqrt(250)
    sr = 2.5 / np.sqrt(days)
    sr0 = expected_max_sharpe(variance, 100)
    # by hand: sqrt(V) * ((1 - g) * z(0.99) + g * z(1 - 1/(100 e)))
    g = 0.5772156649015329
    z99, z_e = 2.3263478740408408, 2.6802104449668875  # scipy.stats.norm.ppf
    assert sr0 == pytest.approx(np.sqrt(variance) * ((1 - g) * z99 + g * z_e), rel=1e-9)
    assert sr0 == pytest.approx(0.1132, abs=5e-5)
    assert sr0 * np.sqrt(days) == pytest.approx(1.7898, abs=5e-4)
    dsr = deflated_sharpe_ratio(sr, variance, 100, 1250, -3.0, 10.0)
    assert dsr == pytest.approx(0.9004, abs=5e-5)
    # = Z((SR - SR0) sqrt(T - 1) / sqrt(1 - g3 SR + (g4 - 1)/4 SR^2)), here by hand
    z = (sr - sr0) * np.sqrt(1249) / np.sqrt(1 + 3 * sr + 9 / 4 * sr**2)
    from scipy.stats import norm  # type: ignore[import-untyped]  # scipy ships no stubs here

    assert dsr == pytest.approx(float(norm.cdf(z)), rel=1e-12)
    # one trial is no selection: DSR is the probabilistic Sharpe ratio against 0
    assert expected_max_sharpe(variance, 1) == 0.0
    assert deflated_sharpe_ratio(sr, variance, 1, 1250, -3.0, 10.0) == pytest.approx(
        probabilistic_sharpe_ratio(sr, 0.0, 1250, -3.0, 10.0)
    )
    # more trials, or more dispersion between them, raise the bar
    assert deflated_sharpe_ratio(sr, variance, 1000, 1250, -3.0, 10.0) < dsr
    assert deflated_sharpe_ratio(sr, 2 * variance, 100, 1250, -3.0, 10.0) < dsr
    assert np.isnan(deflated_sharpe_ratio(np.nan, variance, 100, 1250, -3.0, 10.0))


def test_periodic_stats_are_per_bar_not_annualized() -> None:
    r = np.array([0.01, -0.02, 0.03, 0.0])
    stats = periodic_stats(r)
    mean, dev = 0.005, r - 0.005
    m2, m3, m4 = np.mean(dev**2), np.mean(dev**3), np.mean(dev**4)
    assert stats["sharpe"] == pytest.approx(mean / np.std(r, ddof=1))
    assert stats["skewness"] == pytest.approx(m3 / m2**1.5)
    assert stats["kurtosis"] == pytest.approx(m4 / m2**2)
    assert stats["count"] == 4
    normal = periodic_stats(np.random.default_rng(0).normal(0.001, 0.01, 200_000))
    assert normal["kurtosis"] == pytest.approx(3.0, abs=0.05)  # non-excess: 3 for a normal
    assert abs(normal["skewness"]) < 0.02
    assert np.isnan(periodic_stats(np.zeros(5))["sharpe"])
