"""Section 3: the full feature set (bar_features_v1) on 1,000,000 synthetic 1-minute bars."""

from __future__ import annotations

import time

from benchmarks.common import (
    Section,
    Verdict,
    fmt_s,
    load_average,
    log,
    measure,
    reset_peak_rss,
    rss_bytes,
    table,
    verdict,
)

NAME = "features"
N_BARS = 1_000_000
SPEC = f"synthetic:n_bars={N_BARS},timeframe=1m,seed=7"
TARGET_S = 2.0
REPEAT = 3


def run() -> Section:
    from raytrader.data.sources import load_bars
    from raytrader.features.bar_features_v1 import BAR_FEATURES_V1
    from raytrader.features.engine import compute_features

    load_start = load_average()
    log(f"features: generating {N_BARS:,} synthetic bars")
    t0 = time.perf_counter()
    bars = load_bars(SPEC)
    gen_s = time.perf_counter() - t0

    log(f"features: compute_features (warm-up 1, {REPEAT} repeats)")
    t = measure(lambda: compute_features(bars), warmup=1, repeat=REPEAT)
    log(f"  median {fmt_s(t.median)}")

    # peak memory of one more (untimed) call: peak RSS reset just before, read right after
    rss_ok = reset_peak_rss()
    before, _ = rss_bytes()
    frame = compute_features(bars)
    _, peak = rss_bytes()
    after, _ = rss_bytes()
    n_features = len(BAR_FEATURES_V1.features)
    out_mib = frame.memory_usage(index=False, deep=True).sum() / 2**20
    growth_mib = (peak - before) / 2**20 if rss_ok else float("nan")
    retained_mib = (after - before) / 2**20
    shape = frame.shape
    del frame

    ok = t.median < TARGET_S
    verdicts = [
        Verdict(f"3. {n_features} features on 1M bars", f"< {TARGET_S:g} s", fmt_s(t.median), ok)
    ]
    timing_table = table(
        ["what", "median", "min", "repeats", "bars / s", "target", "result"],
        [
            [
                f"`compute_features(bars)` → {shape[0]:,} × {shape[1]} frame",
                fmt_s(t.median),
                fmt_s(t.min),
                str(t.n),
                f"{N_BARS / t.median:,.0f}",
                f"< {TARGET_S:g} s",
                verdict(ok),
            ]
        ],
    )
    memory_table = table(
        ["memory (one call, /proc/self/status)", "MiB"],
        [
            [f"output frame ({n_features} float64 features + bool `warm`)", f"{out_mib:,.0f}"],
            [
                "peak RSS growth during the call (VmHWM after − VmRSS before)",
                f"{growth_mib:,.0f}" if rss_ok else "n/a (cannot reset VmHWM here)",
            ],
            ["RSS still held after the call (the returned frame)", f"{retained_mib:,.0f}"],
        ],
    )
    body = f"""
Feature set `{BAR_FEATURES_V1.name}`: {n_features} TA-Lib-based features (plus the boolean `warm`
column) on `load_bars("{SPEC}")` (generated in {fmt_s(gen_s)}, not timed). There is no external
reference tool for this section; the target is the issue's absolute one.

{timing_table}

{memory_table}

The peak is {growth_mib / out_mib:.1f}× the output: `compute_features` first computes every
feature into its own array (a dict of {n_features} arrays, plus TA-Lib temporaries), then copies
them into the Fortran-ordered output matrix while all of them are still alive.

*Method.* `time.perf_counter()` around `compute_features(bars)` in this process, 1 warm-up call
(imports TA-Lib's abstract interface, faults in memory) then {REPEAT} timed repeats; statistic =
median, minimum shown too. The memory numbers come from one further untimed call: the kernel's peak
RSS counter is reset (`/proc/self/clear_refs` = 5) right before it and read right after.
Load average (1 / 5 min) at section start: {load_start}; at end: {load_average()}.
"""
    return Section(NAME, "3. Feature set bar_features_v1 on 1,000,000 bars", body, verdicts)
