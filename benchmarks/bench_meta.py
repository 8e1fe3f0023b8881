"""Section 8: the meta ensemble per bar — what a served decision costs beside the fixed ensemble's,
and what a cold replica's catch-up costs."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from benchmarks.common import (
    Job,
    Section,
    Verdict,
    fmt_s,
    interleaved,
    load_average,
    log,
    table,
    verdict,
)

NAME = "meta"
DATA = "goog"
LIVE = 120  # the last bars, stepped one at a time
BUDGET_S = 0.100  # the decision service's latency budget for a one-row decision


def run() -> Section:
    import mlflow
    import numpy as np

    from raytrader.data.sources import load_bars
    from raytrader.ensemble import default_ensemble
    from raytrader.meta.model import default_meta, keyed_frame, load_meta
    from raytrader.registry import own_pyfunc
    from raytrader.tracking import embedded_uri, using_uri

    load_start = load_average()
    bars = load_bars(DATA)
    frame = keyed_frame(bars)
    n = len(frame)
    with tempfile.TemporaryDirectory(prefix="bench-meta-") as tmp:
        root = Path(tmp)
        uri = embedded_uri(root)
        log("meta: registering the demo's ensemble and meta ensemble on GOOG")
        t0 = time.perf_counter()
        default_ensemble(uri, root, data=DATA)
        build_s = time.perf_counter()
        default_meta(uri, root, data=DATA)
        build_s = time.perf_counter() - build_s
        register_s = time.perf_counter() - t0
        _, meta = load_meta("models:/raytrader-meta@champion", uri)
        with using_uri(uri):
            ensemble = own_pyfunc(mlflow.pyfunc.load_model("models:/raytrader-ensemble@champion"))

        log(f"meta: cold catch-up, {n} bars (3 repeats)")
        cold = []
        for _ in range(3):
            meta.reset()
            t = time.perf_counter()
            meta.predict(None, frame)
            cold.append(time.perf_counter() - t)
        cold_s = float(np.median(cold))

        # one new bar at a time: the state replayed up to the last LIVE bars, then each of them
        meta.reset()
        meta.predict(None, frame.iloc[: n - LIVE])
        rows = [frame.iloc[i : i + 1] for i in range(n - LIVE, n)]
        step_times = []
        for row in rows:
            t = time.perf_counter()
            meta.predict(None, row)
            step_times.append(time.perf_counter() - t)
        step = np.asarray(step_times)
        last = rows[-1]
        timings = interleaved(
            {
                "meta, the same bar again": Job(lambda: meta.predict(None, last), per_round=20),
                "ensemble (2 rules, weighted)": Job(
                    lambda: ensemble.predict(None, last), per_round=20
                ),
            },
            rounds=5,
        )
    members = len(meta.spec.members)
    ok = float(np.median(step)) < BUDGET_S
    verdicts = [
        Verdict(
            f"8. meta ensemble, one new bar ({members} members)",
            f"< {BUDGET_S * 1e3:g} ms (the service's budget)",
            fmt_s(float(np.median(step))),
            ok,
        )
    ]
    rows_md = [
        [
            f"meta ensemble, one new bar ({LIVE} live bars)",
            fmt_s(float(np.median(step))),
            fmt_s(float(np.percentile(step, 99))),
            fmt_s(float(step.min())),
        ],
        *[
            [name, fmt_s(t.median), fmt_s(float(np.percentile(t.samples, 99))), fmt_s(t.min)]
            for name, t in timings.items()
        ],
        [
            f"meta ensemble, a cold replica's catch-up ({n} bars)",
            fmt_s(cold_s),
            "",
            fmt_s(min(cold)),
        ],
    ]
    body = f"""
The demo's meta ensemble (`raytrader.meta.model.default_meta`: {members} rule members on GOOG
daily, the `table` predictor, preset `balanced`) beside the demo's fixed ensemble (2 rules,
`weighted`), both called as the decision service calls them (the pyfunc's own `predict`, no
MLflow schema check), one feature row per call.

{table(["what", "median", "p99", "min"], rows_md)}

{verdict(ok)} against the budget a version must meet to be served. Building both versions
(members registered, the meta's predictor fitted, {n} bars replayed and backtested) took
{fmt_s(register_s)} ({fmt_s(build_s)} for the meta ensemble). A new bar costs the regime update,
{members} kernel steps, the predictor on {members} rows, the weights' bisection and the combiner;
the same bar again is a lookup (idempotent per feature time). A replica that starts cold replays
the symbol's stored rows once — {fmt_s(cold_s / n)} a bar — then steps one bar at a time.

*Method.* `time.perf_counter()` around each call in this process after the catch-up; the new-bar
row is one timing per bar of the last {LIVE}; the repeated-bar and ensemble rows are interleaved
rounds (5 × 20 after a warm-up); the catch-up is the median of 3 replays from an empty state.
Load average (1 / 5 min) at section start: {load_start}; at end: {load_average()}.
"""
    return Section(NAME, "8. The meta ensemble per bar", body, verdicts)
