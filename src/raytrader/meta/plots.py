"""The meta ensemble's two pictures: its weights over time on the regime it read, and its equity
beside equal weight and the asset, out of sample (the bars after the predictor's fit)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from raytrader.meta.regimes import REGIMES

#: one colour per regime (the background), none where there was no reading
_REGIME_COLOURS = dict(zip(REGIMES, ("#2ca02c", "#d62728", "#9467bd", "#bcbd22", "#17becf",
                                     "#ff7f0e", "#7f7f7f"), strict=True))  # fmt: skip


def _save(fig: Any, path: Path) -> Path:
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp, dpi=100)
    tmp.replace(path)
    return path


def plot_meta(
    decisions: pd.DataFrame,
    equity: dict[str, pd.Series],
    fitted_until: pd.Timestamp,
    directory: str | Path,
    title: str,
) -> dict[str, Path]:
    """``weights.png`` (each member's weight per bar, stacked, under a strip of the regime) and
    ``equity.png`` (each curve of ``equity``, from ``fitted_until`` on) into ``directory``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    after = decisions.loc[decisions.index > fitted_until]
    why = [json.loads(e) for e in after["explanation"]]
    members = list(why[0]["members"]) if why else []
    weights = np.array([[w["members"][m]["weight"] for m in members] for w in why]).reshape(
        len(why), len(members)
    )
    regimes = [w["regime"] for w in why]
    times = after.index
    fig, (strip, ax) = plt.subplots(
        2, 1, figsize=(11, 5), sharex=True, height_ratios=(1, 7), layout="constrained"
    )
    start = 0
    for i in range(1, len(times) + 1):  # one span per run of the same regime, in the top strip
        if i == len(times) or regimes[i] != regimes[start]:
            colour = _REGIME_COLOURS.get(str(regimes[start]))
            if colour is not None:
                strip.axvspan(times[start], times[i - 1], color=colour, lw=0)
            start = i
    strip.set_yticks([])
    strip.set_ylabel("regime", rotation=0, ha="right", va="center")
    ax.stackplot(times, weights.T, labels=members, alpha=0.85)
    handles, labels = ax.get_legend_handles_labels()
    for name, colour in _REGIME_COLOURS.items():
        handles.append(Rectangle((0, 0), 1, 1, color=colour))
        labels.append(f"regime: {name}")
    ax.legend(handles, labels, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8)
    ax.set_ylim(0, 1)
    ax.set_ylabel("weight")
    strip.set_title(f"{title}: each member's weight by bar, and the regime read then")
    paths = {"weights_png": _save(fig, out / "weights.png")}
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(11, 4.5))
    for label, curve in equity.items():
        part = curve.loc[curve.index > fitted_until]
        ax.plot(part.index, part.to_numpy() / part.iloc[0], lw=1.1, label=label)
    ax.set_ylabel("equity (start = 1)")
    ax.set_title(f"{title}: out of sample, net of costs")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    paths["equity_png"] = _save(fig, out / "equity.png")
    plt.close(fig)
    return paths
