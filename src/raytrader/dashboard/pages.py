"""The dashboard's pages: plain functions that turn API responses into frames (tested without a
browser), and one ``render_*`` function per page that draws them with Streamlit.

Every number shown is the API's, formatted by :func:`fmt` and never recomputed; what is derived
here (a drawdown series from an equity curve, cumulative reward, a rank correlation of parameters
with the score, counts) is labelled as such. A ``render_*`` function takes the
:class:`~raytrader.dashboard.client.ApiClient`; :func:`show` runs one and turns a
:class:`~raytrader.dashboard.client.DashboardError` into an error box.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import altair as alt
import pandas as pd
import streamlit as st

from raytrader.dashboard.client import ApiClient, DashboardError, read_token

API = "/api/v1"
#: the most rows of a listing a page collects
ROW_CAP = 2000
STEP_CAP = 20000
#: the run metrics a runs table shows as columns (the most common ones)
RUN_METRIC_COLUMNS = 6
ALIASES = ("champion", "challenger")
#: the session key of an admin token typed in on the models or system page
ADMIN_KEY = "_raytrader_admin_token"
FLASH_KEY = "_raytrader_flash"


# ------------------------------------------------------------------------------------ formatting
def fmt(value: Any) -> str:
    """A value for display: floats with 4 decimals (``0.0003`` style below 0.001), ints with
    thousands separators, ``None`` as a dash; everything else as ``str``."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        if value == 0.0:
            return "0"
        if abs(value) < 1e-3:
            return f"{value:.4g}"
        return f"{value:,.4f}"
    if isinstance(value, dict | list):
        return json.dumps(value, sort_keys=True, default=str)
    return str(value)


def fmt_time(value: str | None) -> str:
    """An ISO time from the API as ``YYYY-MM-DD HH:MM:SS`` (UTC)."""
    if not value:
        return "—"
    try:
        stamp = pd.Timestamp(value)
    except ValueError:
        return value
    if stamp.tzinfo is not None:
        stamp = stamp.tz_convert("UTC")
    return str(stamp.strftime("%Y-%m-%d %H:%M:%S"))


def fmt_duration(seconds: float | None) -> str:
    """Seconds as ``1h 02m``, ``3m 04s`` or ``5.2 s``."""
    if seconds is None:
        return "—"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


def flatten(doc: Mapping[str, Any] | None, prefix: str = "") -> dict[str, Any]:
    """A nested JSON document as dotted keys (``{"a": {"b": 1}}`` -> ``{"a.b": 1}``)."""
    out: dict[str, Any] = {}
    for key, value in (doc or {}).items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


def _times(values: Iterable[Any]) -> pd.Series:
    return pd.to_datetime(pd.Series(list(values), dtype=object), utc=True, format="ISO8601")


def _scalar(value: Any) -> bool:
    return value is None or isinstance(value, int | float | str | bool)


# ------------------------------------------------------------------------------------------ runs
def run_label(run: Mapping[str, Any]) -> str:
    return f"#{run['id']} {run['kind']} · {run['name']}"


def runs_frame(runs: Sequence[Mapping[str, Any]], metric_columns: int = RUN_METRIC_COLUMNS) -> Any:
    """The runs table: id, kind, name, status, symbol, timeframe, created, duration and the most
    common scalar metrics (as the API gives them)."""
    counts: dict[str, int] = {}
    for run in runs:
        for key, value in (run.get("metrics") or {}).items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                counts[key] = counts.get(key, 0) + 1
    keys = sorted(counts, key=lambda k: (-counts[k], k))[:metric_columns]
    rows = []
    for run in runs:
        metrics = run.get("metrics") or {}
        rows.append({
            "id": run["id"], "kind": run["kind"], "name": run["name"], "status": run["status"],
            "symbol": run.get("symbol"), "timeframe": run.get("timeframe"),
            "created": fmt_time(run.get("created_at")),
            "duration": fmt_duration(run.get("duration_s")),
            **{key: metrics.get(key) for key in keys},
        })  # fmt: skip
    columns = ["id", "kind", "name", "status", "symbol", "timeframe", "created", "duration", *keys]
    return pd.DataFrame(rows, columns=columns)


def compare_frame(
    docs: Sequence[Mapping[str, Any] | None], labels: Sequence[str], *, only_diff: bool = False
) -> Any:
    """Documents (configs or metrics) side by side: one row per dotted key, one column per
    label, each value formatted; ``differs`` marks the keys whose values are not all equal."""
    flat = [flatten(doc) for doc in docs]
    keys = sorted({key for doc in flat for key in doc})
    rows = []
    for key in keys:
        raw = [json.dumps(doc.get(key), sort_keys=True, default=str) for doc in flat]
        differs = len(set(raw)) > 1 or any(key not in doc for doc in flat)
        if only_diff and not differs:
            continue
        row: dict[str, Any] = {"key": key}
        row.update({label: fmt(doc.get(key)) for label, doc in zip(labels, flat, strict=True)})
        row["differs"] = "≠" if differs else ""
        rows.append(row)
    return pd.DataFrame(rows, columns=["key", *labels, "differs"]).set_index("key")


# ------------------------------------------------------------------------------ curves, episodes
def drawdown(equity: pd.Series) -> pd.Series:
    """The drawdown of an equity series: ``equity / running peak - 1`` (0 at each new high; NaN
    where the equity is missing, the peak carried over it)."""
    values = pd.to_numeric(equity, errors="coerce").astype(float)
    peak = values.cummax().ffill()
    out: pd.Series = values / peak - 1.0
    return out


def equity_frame(points: Sequence[Mapping[str, Any]]) -> Any:
    """A backtest's equity points (``time``, ``equity``) with their drawdown."""
    frame = pd.DataFrame(
        {
            "time": _times(p["time"] for p in points),
            "equity": pd.Series([p.get("equity") for p in points], dtype=float),
        }
    )
    frame["drawdown"] = drawdown(frame["equity"])
    return frame


def steps_frame(steps: Sequence[Mapping[str, Any]]) -> Any:
    """An episode's steps as a frame: ``t``, ``time`` (UTC, NaT when unknown), ``action``,
    ``position``, ``reward``, ``equity``, ``price``, and the derived ``drawdown`` (of equity) and
    ``cum_reward`` (the running sum of the rewards of the steps listed)."""
    cols = ("action", "target", "position", "reward", "equity", "price")
    frame = pd.DataFrame(
        {
            "t": pd.Series([s["t"] for s in steps], dtype="int64"),
            "time": _times(s.get("time") for s in steps),
            **{c: pd.Series([s.get(c) for s in steps], dtype=float) for c in cols},
        }
    )
    frame["drawdown"] = drawdown(frame["equity"])
    frame["cum_reward"] = frame["reward"].fillna(0.0).cumsum()
    return frame


def operations_frame(operations: Sequence[Mapping[str, Any]]) -> Any:
    """Entries and exits as chart markers: ``time``, ``price``, ``kind`` (``entry`` or the exit
    reason), ``side``, ``units``, ``reason`` and ``marker`` (``entry long``, ``exit signal``)."""
    rows = []
    for op in operations:
        kind = str(op["kind"])
        marker = f"entry {op['side']}" if kind == "entry" else f"exit {kind}"
        rows.append({
            "number": op["number"], "time": op["time"], "price": op["price"], "kind": kind,
            "side": op["side"], "units": op["units"], "reason": op["reason"], "marker": marker,
        })  # fmt: skip
    columns = ["number", "time", "price", "kind", "side", "units", "reason", "marker"]
    frame = pd.DataFrame(rows, columns=columns)
    frame["time"] = _times(frame["time"])
    frame["price"] = frame["price"].astype(float)
    return frame


def action_counts(steps: Any, max_values: int = 20) -> Any:
    """How often each action was taken (``action``, ``count``); continuous actions (more than
    ``max_values`` distinct values) in 20 equal bins labelled by their range."""
    actions = steps["action"].dropna()
    if actions.empty:
        return pd.DataFrame({"action": pd.Series(dtype=str), "count": pd.Series(dtype="int64")})
    if actions.nunique() <= max_values:
        counts = actions.value_counts().sort_index()
        integral = all(float(v).is_integer() for v in counts.index)
        labels = [str(int(v)) if integral else fmt(float(v)) for v in counts.index]
    else:
        counts = pd.cut(actions, bins=20).value_counts().sort_index()
        labels = [f"{fmt(float(iv.left))}..{fmt(float(iv.right))}" for iv in counts.index]
    return pd.DataFrame({"action": labels, "count": counts.to_numpy(dtype="int64")})


def reward_stats(steps: Any) -> dict[str, Any]:
    """Summary statistics of the listed steps' rewards (steps may be sampled)."""
    rewards = steps["reward"].dropna()
    if rewards.empty:
        return {"steps": 0}
    return {
        "steps": len(rewards),
        "sum": float(rewards.sum()),
        "mean": float(rewards.mean()),
        "std": float(rewards.std(ddof=1)) if len(rewards) > 1 else None,
        "min": float(rewards.min()),
        "max": float(rewards.max()),
        "positive": int((rewards > 0).sum()),
        "negative": int((rewards < 0).sum()),
    }


def episode_label(ep: Mapping[str, Any]) -> str:
    it = "" if ep.get("iteration") is None else f" iter {ep['iteration']}"
    return f"#{ep['id']} {ep['split']}{it} · reward {fmt(ep['reward_sum'])}"


# ------------------------------------------------------------------------------------ backtests
def backtest_label(bt: Mapping[str, Any]) -> str:
    params = ", ".join(f"{k}={v}" for k, v in sorted((bt.get("params") or {}).items()))
    return f"#{bt['id']} {bt['strategy']}({params}) {bt['symbol']} {bt['timeframe']}"


HEADLINE_METRICS = ("sharpe", "total_return", "max_drawdown", "num_trades", "win_rate")


def backtests_frame(backtests: Sequence[Mapping[str, Any]]) -> Any:
    """The backtests table: what ran on which data, and its headline metrics (as given)."""
    rows = []
    for bt in backtests:
        metrics = bt.get("metrics") or {}
        rows.append({
            "id": bt["id"], "strategy": bt["strategy"],
            "params": fmt(bt.get("params") or {}), "symbol": bt["symbol"],
            "timeframe": bt["timeframe"], "bars": bt["bars"], "run": bt.get("run_id"),
            "created": fmt_time(bt.get("created_at")),
            **{m: metrics.get(m) for m in HEADLINE_METRICS},
        })  # fmt: skip
    columns = [
        "id", "strategy", "params", "symbol", "timeframe", "bars", "run", "created",
        *HEADLINE_METRICS,
    ]  # fmt: skip
    return pd.DataFrame(rows, columns=columns)


def metrics_table(metrics: Mapping[str, Any]) -> Any:
    """A metrics document as a two-column table (``metric``, ``value`` formatted)."""
    rows = [{"metric": k, "value": fmt(v)} for k, v in flatten(metrics).items()]
    return pd.DataFrame(rows, columns=["metric", "value"]).set_index("metric")


def trades_frame(trades: Sequence[Mapping[str, Any]]) -> Any:
    """Round trips as a frame (times parsed)."""
    columns = [
        "number", "side", "units", "entry_time", "exit_time", "entry_price", "exit_price",
        "pnl", "trade_return", "commission", "carry", "exit_reason",
    ]  # fmt: skip
    frame = pd.DataFrame(list(trades), columns=columns)
    for col in ("entry_time", "exit_time"):
        frame[col] = _times(frame[col])
    return frame


# ---------------------------------------------------------------------------------- optimization
def trials_frame(trials: Sequence[Mapping[str, Any]]) -> Any:
    """A search's trials: key, each parameter as a ``param.<name>`` column, score, status,
    early_stopped, iterations, windows (how many walk-forward windows were scored) and
    duration."""
    params = sorted({k for t in trials for k in flatten(t.get("params") or {})})
    rows = []
    for trial in trials:
        flat = flatten(trial.get("params") or {})
        rows.append({
            "trial": trial["key"], **{f"param.{p}": flat.get(p) for p in params},
            "score": trial.get("score"), "status": trial["status"],
            "early_stopped": bool(trial["early_stopped"]), "iterations": trial["iterations"],
            "windows": len(trial.get("window_scores") or []),
            "duration_s": trial.get("duration_s"),
        })  # fmt: skip
    columns = [
        "trial", *(f"param.{p}" for p in params), "score", "status", "early_stopped",
        "iterations", "windows", "duration_s",
    ]  # fmt: skip
    return pd.DataFrame(rows, columns=columns)


def param_importance(trials: Any) -> Any:
    """Per numeric parameter, the Spearman rank correlation of its value with the score over the
    scored trials (``param``, ``spearman``, ``trials``), strongest first; a parameter that never
    varies has ``NaN``."""
    scored = trials[trials["score"].notna()]
    rows = []
    for col in (c for c in trials.columns if str(c).startswith("param.")):
        values = pd.to_numeric(scored[col], errors="coerce")
        ok = values.notna()
        n = int(ok.sum())
        rho = math.nan
        if n >= 2 and values[ok].nunique() > 1 and scored["score"][ok].nunique() > 1:
            rho = float(
                values[ok].rank().corr(scored["score"][ok].astype(float).rank(), method="pearson")
            )
        rows.append({"param": str(col).removeprefix("param."), "spearman": rho, "trials": n})
    frame = pd.DataFrame(rows, columns=["param", "spearman", "trials"])
    order = frame["spearman"].abs().sort_values(ascending=False, na_position="last").index
    return frame.loc[order].reset_index(drop=True)


def asha_stops(trials: Sequence[Mapping[str, Any]]) -> Any:
    """The early-stopped trials: ``trial``, ``stopped_after_window`` (how many windows it was
    scored on), its window scores and score."""
    rows = [
        {
            "trial": t["key"],
            "stopped_after_window": len(t.get("window_scores") or []),
            "window_scores": ", ".join(fmt(s) for s in t.get("window_scores") or []),
            "score": fmt(t.get("score")),
        }
        for t in trials
        if t.get("early_stopped")
    ]
    columns = ["trial", "stopped_after_window", "window_scores", "score"]
    return pd.DataFrame(rows, columns=columns)


# ----------------------------------------------------------------------------------- evaluations
def evaluation_tables(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Per dataset, a table of its candidates (rows: ``candidate``, with its ``role``) by metric
    (columns), the values formatted."""
    out: dict[str, Any] = {}
    datasets = list(dict.fromkeys(str(r["dataset"]) for r in rows))
    for dataset in datasets:
        part = [r for r in rows if r["dataset"] == dataset]
        metrics = list(dict.fromkeys(k for r in part for k in flatten(r.get("metrics") or {})))
        table = []
        for r in part:
            flat = flatten(r.get("metrics") or {})
            table.append(
                {"candidate": r["candidate"], "role": r["role"]}
                | {m: fmt(flat.get(m)) for m in metrics}
            )
        out[dataset] = pd.DataFrame(table, columns=["candidate", "role", *metrics]).set_index(
            "candidate"
        )
    return out


def evaluation_metric_names(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """The numeric metrics of an evaluation's rows, in first-seen order."""
    names: dict[str, None] = {}
    for r in rows:
        for k, v in flatten(r.get("metrics") or {}).items():
            if v is None or (isinstance(v, int | float) and not isinstance(v, bool)):
                names[k] = None
    return list(names)


def evaluation_bars(rows: Sequence[Mapping[str, Any]], metric: str) -> Any:
    """One metric of every row (``dataset``, ``candidate``, ``role``, ``value``; missing values
    left out) for the candidate-vs-baseline bars."""
    out = []
    for r in rows:
        value = flatten(r.get("metrics") or {}).get(metric)
        if isinstance(value, int | float) and not isinstance(value, bool):
            out.append({
                "dataset": r["dataset"], "candidate": r["candidate"], "role": r["role"],
                "value": float(value),
            })  # fmt: skip
    return pd.DataFrame(out, columns=["dataset", "candidate", "role", "value"])


# ---------------------------------------------------------------------------------------- models
def models_frame(models: Sequence[Mapping[str, Any]]) -> Any:
    """Registered models: name, kind, latest version, versions count, and each alias's version."""
    rows = []
    for m in models:
        aliases = m.get("aliases") or {}
        rows.append({
            "name": m["name"], "kind": m.get("kind", ""), "latest": m.get("latest"),
            "versions": len(m.get("versions") or []),
            **{a: str(aliases[a]) if a in aliases else "—" for a in ALIASES},
            "other aliases": ", ".join(
                f"{a}→{v}" for a, v in sorted(aliases.items()) if a not in ALIASES
            ),
        })  # fmt: skip
    columns = ["name", "kind", "latest", "versions", *ALIASES, "other aliases"]
    return pd.DataFrame(rows, columns=columns)


def versions_frame(model: Mapping[str, Any]) -> Any:
    """A model's versions: version, the aliases on it, its MLflow run, created, tags."""
    by_version: dict[str, list[str]] = {}
    for alias, version in (model.get("aliases") or {}).items():
        by_version.setdefault(str(version), []).append(alias)
    rows = [
        {
            "version": str(v["version"]),
            "aliases": ", ".join(sorted(by_version.get(str(v["version"]), []))),
            "run_id": v.get("run_id") or "—",
            "created": fmt_time(v.get("created_at")),
            "tags": ", ".join(f"{k}={t}" for k, t in sorted((v.get("tags") or {}).items())),
        }
        for v in model.get("versions") or []
    ]
    return pd.DataFrame(rows, columns=["version", "aliases", "run_id", "created", "tags"])


# ---------------------------------------------------------------------------------------- system
def component_values(component: Mapping[str, Any]) -> Any:
    """A component's values as a two-column table (``value`` formatted)."""
    rows = [{"value of": k, "value": fmt(v)} for k, v in (component.get("values") or {}).items()]
    return pd.DataFrame(rows, columns=["value of", "value"]).set_index("value of")


def jobs_frame(jobs: Sequence[Mapping[str, Any]]) -> Any:
    rows = [
        {
            "job_id": j.get("job_id"),
            "status": j.get("status"),
            "entrypoint": j.get("entrypoint"),
            "submitted": fmt_time(j.get("submitted_at")),
            "message": j.get("message") or "",
        }
        for j in jobs
    ]
    return pd.DataFrame(rows, columns=["job_id", "status", "entrypoint", "submitted", "message"])


# ============================================================================ Streamlit helpers
def show(render: Callable[[ApiClient], None], api: ApiClient) -> None:
    """Run a page; an API failure becomes an error box naming the API's URL, not a traceback."""
    try:
        render(api)
    except DashboardError as exc:
        if exc.status is None:
            st.error(f"Cannot reach the experiment API at **{api.base_url}**: {exc.detail}")
        elif exc.status in (401, 403):
            st.error(
                f"The experiment API at **{api.base_url}** refused the token "
                f"(HTTP {exc.status}): {exc.detail}"
            )
        else:
            st.error(f"The experiment API at **{api.base_url}** answered: {exc}")


def _query_int(name: str) -> int | None:
    raw = st.query_params.get(name)
    try:
        return int(raw) if raw is not None else None
    except ValueError:
        return None


def _query_ints(name: str) -> list[int]:
    raw = st.query_params.get(name) or ""
    out = []
    for part in raw.split(","):
        try:
            out.append(int(part))
        except ValueError:
            continue
    return out


def _pick(
    label: str, items: Sequence[Mapping[str, Any]], fmt_item: Callable[[Any], str], param: str
) -> Mapping[str, Any]:
    """A selectbox over ``items`` by id; its initial choice is the URL's ``?param=id``."""
    ids = [int(i["id"]) for i in items]
    wanted = _query_int(param)
    index = ids.index(wanted) if wanted in ids else 0
    by_id = {int(i["id"]): i for i in items}
    chosen = st.selectbox(label, ids, index=index, format_func=lambda i: fmt_item(by_id[i]))
    return by_id[int(chosen if chosen is not None else ids[0])]


def _table(frame: Any) -> None:
    st.table(frame)


def _grid(frame: Any, **kwargs: Any) -> None:
    st.dataframe(frame, hide_index=True, width="stretch", **kwargs)


def _chart(chart: Any) -> None:
    st.altair_chart(chart, width="stretch")


def _metrics_row(values: Sequence[tuple[str, Any]]) -> None:
    for col, (label, value) in zip(st.columns(len(values)), values, strict=True):
        col.metric(label, fmt(value) if not isinstance(value, str) else value)


def _x(frame: Any) -> tuple[str, str]:
    """The x field of a step chart: ``time`` when every step has one, else ``t``."""
    if len(frame) and frame["time"].notna().all():
        return "time", "T"
    return "t", "Q"


# ------------------------------------------------------------------------------------------ runs
def render_runs(api: ApiClient) -> None:
    st.title("Runs")
    c1, c2, c3 = st.columns(3)
    kind = c1.text_input("kind", placeholder="rl, supervised, rules…")
    status = c2.selectbox("status", ["", "running", "finished", "failed"], format_func=_any)
    symbol = c3.text_input("symbol", placeholder="GOOG")
    runs = api.pages(
        f"{API}/runs", cap=ROW_CAP, kind=kind.strip(), status=status, symbol=symbol.strip(),
        limit=500,
    )  # fmt: skip
    if not runs:
        st.info("No runs yet." if not (kind or status or symbol) else "No runs match.")
        return
    by_status: dict[str, int] = {}
    for r in runs:
        by_status[r["status"]] = by_status.get(r["status"], 0) + 1
    _metrics_row([("runs", len(runs)), *sorted(by_status.items())])
    _grid(runs_frame(runs))

    st.subheader("Compare")
    by_id = {int(r["id"]): r for r in runs}
    default = [i for i in _query_ints("compare") if i in by_id]
    chosen = st.multiselect(
        "runs to compare (2 or more)", list(by_id), default=default,
        format_func=lambda i: run_label(by_id[i]),
    )  # fmt: skip
    if len(chosen) < 2:
        st.caption("Select two or more runs to see their configs and metrics side by side.")
        return
    picked = [by_id[i] for i in chosen]
    labels = [f"#{r['id']}" for r in picked]
    only_diff = st.toggle("only the config keys that differ", value=False)
    st.markdown("**Config**")
    _table(compare_frame([r.get("config") for r in picked], labels, only_diff=only_diff))
    st.markdown("**Metrics**")
    metrics = compare_frame([r.get("metrics") for r in picked], labels)
    if metrics.empty:
        st.caption("None of these runs recorded metrics.")
    else:
        _table(metrics)
    st.markdown("**Run**")
    fields = ("kind", "status", "symbol", "timeframe", "data", "seed", "code_version")
    head = [{f: r.get(f) for f in fields} | {"duration": fmt_duration(r.get("duration_s"))}
            for r in picked]  # fmt: skip
    _table(compare_frame(head, labels))


def _any(value: str) -> str:
    return value or "any"


# --------------------------------------------------------------------------------------- episode
def _runs_with_episodes(api: ApiClient, runs: Sequence[Mapping[str, Any]]) -> int | None:
    """The first of ``runs`` (at most 25 asked) that has an episode."""
    for run in runs[:25]:
        if api.get(f"{API}/runs/{run['id']}/episodes", limit=1)["items"]:
            return int(run["id"])
    return None


def render_episode(api: ApiClient) -> None:
    st.title("Episode")
    runs = api.pages(f"{API}/runs", cap=ROW_CAP, limit=500)
    if not runs:
        st.info("No runs yet.")
        return
    wanted = _query_int("run")
    if wanted is None or all(int(r["id"]) != wanted for r in runs):
        first = _runs_with_episodes(api, runs)
        if first is not None:
            st.query_params["run"] = str(first)
    run = _pick("run", runs, run_label, "run")
    episodes = api.pages(f"{API}/runs/{run['id']}/episodes", cap=ROW_CAP, limit=500)
    if not episodes:
        st.info(f"Run #{run['id']} has no episodes.")
        return
    ep = _pick("episode", episodes, episode_label, "episode")
    _metrics_row([
        ("reward sum", ep["reward_sum"]), ("total return", ep.get("total_return")),
        ("sharpe", ep.get("sharpe")), ("max drawdown", ep.get("max_drawdown")),
        ("trades", ep["trades"]), ("length", ep["length"]),
    ])  # fmt: skip
    steps = steps_frame(api.pages(f"{API}/episodes/{ep['id']}/steps", cap=STEP_CAP, limit=5000))
    ops = operations_frame(api.pages(f"{API}/episodes/{ep['id']}/operations", cap=ROW_CAP))
    if steps.empty:
        st.info("This episode has no recorded steps.")
    else:
        if len(steps) < ep["length"]:
            st.caption(f"{len(steps):,} of {ep['length']:,} steps recorded (sampled).")
        _episode_charts(steps, ops)
    st.subheader("Trades")
    trades = api.pages(f"{API}/episodes/{ep['id']}/trades", cap=ROW_CAP)
    if trades:
        _grid(trades_frame(trades))
    else:
        st.caption("No trades.")


def _episode_charts(steps: Any, ops: Any) -> None:
    x, xtype = _x(steps)
    st.subheader("Price and operations")
    price = (
        alt.Chart(steps)
        .mark_line()
        .encode(x=alt.X(f"{x}:{xtype}", title=x), y=alt.Y("price:Q", scale=alt.Scale(zero=False)))
    )
    inside = ops
    if x == "time" and not ops.empty:
        inside = ops[ops["time"].between(steps["time"].min(), steps["time"].max())]
        if len(inside) < len(ops):
            st.caption(
                f"{len(ops) - len(inside)} of {len(ops)} operations fall outside the recorded "
                "steps' time range and are not marked."
            )
    if x == "time" and not inside.empty:
        markers = (
            alt.Chart(inside)
            .mark_point(size=90, filled=True)
            .encode(
                x="time:T",
                y="price:Q",
                color=alt.Color("marker:N", title="operation"),
                shape=alt.Shape("kind:N"),
                tooltip=["number", "time:T", "marker", "side", "units", "price", "reason"],
            )
        )
        _chart(price + markers)
    else:
        _chart(price)
        if not ops.empty and x != "time":
            st.caption("The steps have no times: operations are listed below, not marked.")
    if not ops.empty:
        with st.expander(f"{len(ops)} operations"):
            _grid(ops.drop(columns=["marker"]))

    left, right = st.columns(2)
    with left:
        st.subheader("Equity")
        _chart(
            alt.Chart(steps)
            .mark_line()
            .encode(x=f"{x}:{xtype}", y=alt.Y("equity:Q", scale=alt.Scale(zero=False)))
        )
    with right:
        st.subheader("Drawdown")
        _chart(
            alt.Chart(steps)
            .mark_area(opacity=0.6, color="#d62728")
            .encode(x=f"{x}:{xtype}", y=alt.Y("drawdown:Q", axis=alt.Axis(format="%")))
        )

    left, right = st.columns(2)
    with left:
        st.subheader("Actions")
        counts = action_counts(steps)
        if counts.empty:
            st.caption("No actions recorded.")
        else:
            _chart(
                alt.Chart(counts)
                .mark_bar()
                .encode(x=alt.X("action:N", sort=None), y="count:Q", tooltip=["action", "count"])
            )
    with right:
        st.subheader("Reward per step")
        _chart(alt.Chart(steps).mark_bar().encode(x=f"{x}:{xtype}", y="reward:Q"))
    left, right = st.columns(2)
    with left:
        st.subheader("Cumulative reward")
        _chart(alt.Chart(steps).mark_line().encode(x=f"{x}:{xtype}", y="cum_reward:Q"))
    with right:
        st.subheader("Reward statistics (recorded steps)")
        _table(metrics_table(reward_stats(steps)))


# ------------------------------------------------------------------------------------- backtests
def _equity_charts(frame: Any, color: str | None = None) -> None:
    left, right = st.columns(2)
    enc: dict[str, Any] = (
        {"color": alt.Color(f"{color}:N", legend=alt.Legend(orient="bottom", columns=1))}
        if color
        else {}
    )
    with left:
        st.markdown("**Equity**")
        _chart(
            alt.Chart(frame)
            .mark_line()
            .encode(x="time:T", y=alt.Y("equity:Q", scale=alt.Scale(zero=False)), **enc)
        )
    with right:
        st.markdown("**Drawdown**")
        mark = alt.Chart(frame).mark_line() if color else alt.Chart(frame).mark_area(opacity=0.6)
        _chart(mark.encode(x="time:T", y=alt.Y("drawdown:Q", axis=alt.Axis(format="%")), **enc))


def render_backtests(api: ApiClient) -> None:
    st.title("Backtests")
    c1, c2 = st.columns(2)
    strategy = c1.text_input("strategy", placeholder="ma_cross")
    symbol = c2.text_input("symbol", placeholder="GOOG")
    backtests = api.pages(
        f"{API}/backtests", cap=ROW_CAP, strategy=strategy.strip(), symbol=symbol.strip(),
        limit=500,
    )  # fmt: skip
    if not backtests:
        st.info("No backtests yet." if not (strategy or symbol) else "No backtests match.")
        return
    _grid(backtests_frame(backtests))

    st.subheader("Backtest")
    bt = _pick("backtest", backtests, backtest_label, "backtest")
    detail = api.get(f"{API}/backtests/{bt['id']}")
    metrics = detail.get("metrics") or {}
    _metrics_row([(m.replace("_", " "), metrics.get(m)) for m in HEADLINE_METRICS])
    st.caption(
        f"{detail['data']} {fmt_time(detail['start'])} → {fmt_time(detail['end'])}, "
        f"{detail['bars']:,} bars · params {fmt(detail.get('params') or {})}"
    )
    curve = equity_frame(detail.get("equity") or [])
    if curve.empty:
        st.caption("No equity curve recorded.")
    else:
        _equity_charts(curve)
    left, right = st.columns([1, 2])
    with left:
        st.markdown("**Metrics**")
        _table(metrics_table(metrics))
    with right:
        st.markdown("**Trades**")
        trades = api.pages(f"{API}/backtests/{bt['id']}/trades", cap=ROW_CAP, limit=500)
        if trades:
            _grid(trades_frame(trades))
        else:
            st.caption("No trades.")

    st.subheader("Compare strategies")
    by_id = {int(b["id"]): b for b in backtests}
    default = [i for i in _query_ints("compare") if i in by_id] or list(by_id)[:3]
    chosen = st.multiselect(
        "backtests to compare", list(by_id), default=default,
        format_func=lambda i: backtest_label(by_id[i]),
    )  # fmt: skip
    if len(chosen) < 2:
        st.caption("Select two or more backtests to compare their equity curves and metrics.")
        return
    curves = []
    picked = []
    for i in chosen:
        one = api.get(f"{API}/backtests/{i}")
        picked.append(one)
        frame = equity_frame(one.get("equity") or [])
        frame["backtest"] = backtest_label(one)
        curves.append(frame)
    _equity_charts(pd.concat(curves, ignore_index=True), color="backtest")
    _table(compare_frame([b.get("metrics") for b in picked], [f"#{b['id']}" for b in picked]))


# ---------------------------------------------------------------------------------- optimization
def optimizations_frame(searches: Sequence[Mapping[str, Any]]) -> Any:
    rows = [
        {
            "id": o["id"],
            "name": o["name"],
            "target": o["target"],
            "metric": o["metric"],
            "mode": o["mode"],
            "status": o["status"],
            "best_trial": o.get("best_trial"),
            "best_score": o.get("best_score"),
            "created": fmt_time(o.get("created_at")),
            "duration": fmt_duration(o.get("duration_s")),
        }
        for o in searches
    ]
    columns = [
        "id", "name", "target", "metric", "mode", "status", "best_trial", "best_score",
        "created", "duration",
    ]  # fmt: skip
    return pd.DataFrame(rows, columns=columns)


def render_optimization(api: ApiClient) -> None:
    st.title("Optimization")
    searches = api.pages(f"{API}/optimization/runs", cap=ROW_CAP, limit=500)
    if not searches:
        st.info("No searches yet.")
        return
    _grid(optimizations_frame(searches))
    opt = _pick(
        "search", searches, lambda o: f"#{o['id']} {o['name']} ({o['target']})", "optimization"
    )
    trials = api.pages(f"{API}/optimization/runs/{opt['id']}/results", cap=ROW_CAP, limit=500)
    frame = trials_frame(trials)
    stopped = int(frame["early_stopped"].sum()) if not frame.empty else 0
    _metrics_row([
        ("best score", opt.get("best_score")), ("best trial", opt.get("best_trial") or "—"),
        ("trials", len(trials)), ("early stopped (ASHA)", stopped),
        ("metric", f"{opt['metric']} ({opt['mode']})"),
    ])  # fmt: skip
    if opt.get("best_params"):
        st.caption(f"best params: {fmt(opt['best_params'])}")
    if frame.empty:
        st.info("This search has no trials.")
        return
    st.subheader("Trials")
    _grid(frame)

    left, right = st.columns(2)
    with left:
        st.subheader("Parameter importance")
        importance = param_importance(frame)
        if importance.empty:
            st.caption("No numeric parameters.")
        else:
            st.caption(
                "Spearman rank correlation of each parameter with the score (scored trials)."
            )
            shown = importance.dropna(subset=["spearman"])
            if not shown.empty:
                _chart(
                    alt.Chart(shown)
                    .mark_bar()
                    .encode(
                        x=alt.X("spearman:Q", scale=alt.Scale(domain=[-1, 1])),
                        y=alt.Y("param:N", sort=None),
                        color=alt.condition(
                            "datum.spearman > 0", alt.value("#2ca02c"), alt.value("#d62728")
                        ),
                    )
                )
            _table(importance.assign(spearman=importance["spearman"].map(fmt)).set_index("param"))
    with right:
        st.subheader("Score by parameter")
        params = [c for c in frame.columns if str(c).startswith("param.")]
        numeric = [c for c in params if pd.to_numeric(frame[c], errors="coerce").notna().any()]
        if numeric and frame["score"].notna().any():
            scored = frame[frame["score"].notna()]
            long = scored.melt(
                id_vars=["trial", "score", "early_stopped"], value_vars=numeric,
                var_name="param", value_name="value",
            )  # fmt: skip
            long["value"] = pd.to_numeric(long["value"], errors="coerce")
            _chart(
                alt.Chart(long)
                .mark_circle(size=70)
                .encode(
                    x=alt.X("value:Q", title=None),
                    y="score:Q",
                    color="early_stopped:N",
                    tooltip=["trial", "param", "value", "score"],
                )
                .properties(height=160)
                .facet(row=alt.Row("param:N", title=None))
            )
        else:
            st.caption("No scored trials with numeric parameters.")

    st.subheader("ASHA early stops")
    stops = asha_stops(trials)
    if stops.empty:
        st.caption("No trial was stopped early.")
    else:
        _table(stops.set_index("trial"))


# ----------------------------------------------------------------------------------- evaluations
def render_evaluations(api: ApiClient) -> None:
    st.title("Evaluations")
    evaluations = api.pages(f"{API}/evaluation/runs", cap=ROW_CAP, limit=500)
    if not evaluations:
        st.info("No evaluations yet.")
        return
    _grid(
        pd.DataFrame(
            [
                {
                    "id": e["id"],
                    "name": e["name"],
                    "kind": e["kind"],
                    "status": e["status"],
                    "created": fmt_time(e.get("created_at")),
                }
                for e in evaluations
            ]
        )
    )
    ev = _pick("evaluation", evaluations, lambda e: f"#{e['id']} {e['name']}", "evaluation")
    if ev.get("summary"):
        st.subheader("Summary")
        _table(metrics_table(ev["summary"]).rename_axis("of").rename(columns={"value": "verdict"}))
    rows = api.pages(f"{API}/evaluation/runs/{ev['id']}/metrics", cap=ROW_CAP * 5, limit=500)
    if not rows:
        st.info("This evaluation has no rows.")
        return
    for dataset, table in evaluation_tables(rows).items():
        st.subheader(f"Dataset {dataset}")
        _table(table)
    names = evaluation_metric_names(rows)
    if not names:
        return
    st.subheader("Candidates against baselines")
    metric = st.selectbox("metric", names)
    bars = evaluation_bars(rows, str(metric))
    if bars.empty:
        st.caption(f"No row has a value for {metric}.")
        return
    _chart(
        alt.Chart(bars)
        .mark_bar()
        .encode(
            x=alt.X("candidate:N", title=None),
            y=alt.Y("value:Q", title=str(metric)),
            color=alt.Color("role:N"),
            column=alt.Column("dataset:N"),
            tooltip=["dataset", "candidate", "role", "value"],
        )
        .properties(width=160)
    )


# ---------------------------------------------------------------------------------------- models
def admin_client(api: ApiClient) -> ApiClient | None:
    """``api`` with the admin token (the environment's, else one typed in here)."""
    env_token = read_token(admin=True)
    if env_token:
        st.caption("Admin actions use the admin token of the environment.")
        return api.with_token(env_token)
    typed = st.text_input(
        "admin token", type="password", value=st.session_state.get(ADMIN_KEY, ""),
        help="RAYTRADER_EXPERIMENT_ADMIN_TOKEN; needed to promote, roll back and submit jobs",
    )  # fmt: skip
    st.session_state[ADMIN_KEY] = typed
    return api.with_token(typed.strip()) if typed.strip() else None


def _flash() -> None:
    message = st.session_state.pop(FLASH_KEY, None)
    if message:
        st.success(message)


def _admin_action(
    admin: ApiClient | None, path: str, body: Mapping[str, Any], done: Callable[[Any], str]
) -> None:
    """POST an admin action; success reruns the page with a message, an error shows the API's
    detail."""
    if admin is None:
        st.error("An admin token is needed: type it in above.")
        return
    try:
        answer = admin.post(path, dict(body))
    except DashboardError as exc:
        if exc.status is None:
            raise
        st.error(f"HTTP {exc.status}: {exc.detail}")
        return
    st.session_state[FLASH_KEY] = done(answer)
    st.rerun()


def _moved(answer: Any) -> str:
    return (
        f"{answer['name']}: {answer['alias']} → version {answer['version']} "
        f"(was {answer.get('previous') or 'unset'})"
    )


def render_models(api: ApiClient) -> None:
    st.title("Models")
    try:
        models = api.get(f"{API}/models")["items"]
    except DashboardError as exc:
        if exc.missing_route:
            st.info(f"The experiment API at {api.base_url} has no model registry route yet.")
            return
        raise
    _flash()
    if not models:
        st.info("No registered models yet.")
        return
    _grid(models_frame(models))
    for model in models:
        with st.expander(f"{model['name']} · {len(model.get('versions') or [])} versions"):
            _table(versions_frame(model).set_index("version"))

    st.subheader("Promote or roll back")
    admin = admin_client(api)
    names = [str(m["name"]) for m in models]
    by_name = {str(m["name"]): m for m in models}
    name = st.selectbox("model", names) or names[0]
    model = by_name[name]
    versions = sorted(
        {str(v["version"]) for v in model.get("versions") or []} or {str(model.get("latest"))},
        key=lambda v: (not v.isdigit(), -int(v) if v.isdigit() else 0, v),
    )
    latest = str(model.get("latest"))
    aliases = model.get("aliases") or {}
    left, right = st.columns(2)
    with left, st.form("promote"):
        version = st.selectbox(
            "version", versions, index=versions.index(latest) if latest in versions else 0
        )
        alias = st.selectbox("alias", ALIASES, key="promote_alias")
        if st.form_submit_button("Promote", type="primary"):
            _admin_action(
                admin, f"{API}/models/{name}/promote", {"version": version, "alias": alias}, _moved
            )
    with right, st.form("rollback"):
        back = st.selectbox(
            "alias", ALIASES, key="rollback_alias",
            format_func=lambda a: f"{a} (now {aliases.get(a, 'unset')})",
        )  # fmt: skip
        if st.form_submit_button("Roll back"):
            _admin_action(admin, f"{API}/models/{name}/rollback", {"alias": back}, _moved)


# ---------------------------------------------------------------------------------------- system
def render_system(api: ApiClient) -> None:
    st.title("System")
    try:
        components = api.get(f"{API}/system")["components"]
    except DashboardError as exc:
        if exc.missing_route:
            st.info(f"The experiment API at {api.base_url} has no system route yet.")
            components = None
        else:
            raise
    if components is not None:
        if not components:
            st.info("The API reports no components.")
        ok = sum(1 for c in components if c.get("ok"))
        if components:
            st.caption(f"{ok} of {len(components)} components healthy")
        cols = st.columns(3)
        for i, comp in enumerate(components):
            with cols[i % 3].container(border=True):
                st.markdown(f"**{comp['name']}**")
                if comp.get("ok"):
                    st.badge("ok", icon=":material/check_circle:", color="green")
                else:
                    st.badge("not ok", icon=":material/error:", color="red")
                if comp.get("url"):
                    st.caption(str(comp["url"]))
                if comp.get("detail"):
                    st.write(str(comp["detail"]))
                values = component_values(comp)
                if not values.empty:
                    _table(values)
    _render_jobs(api)


def _render_jobs(api: ApiClient) -> None:
    st.subheader("Ray jobs")
    try:
        jobs = api.get(f"{API}/jobs")["items"]
    except DashboardError as exc:
        if exc.missing_route:
            st.info(f"The experiment API at {api.base_url} has no jobs route yet.")
            return
        if exc.status is None or exc.status in (401, 403):
            raise
        st.warning(f"Jobs are not available (HTTP {exc.status}): {exc.detail}")
        return
    _flash()
    if jobs:
        _grid(jobs_frame(jobs))
    else:
        st.caption("No jobs.")
    with st.expander("Submit or stop a job (admin)"):
        admin = admin_client(api)
        left, right = st.columns(2)
        with left, st.form("resubmit"):
            what = st.radio("resubmit the config of", ["run", "optimization"], horizontal=True)
            ident = st.number_input("id", min_value=1, step=1)
            if st.form_submit_button("Submit"):
                key = "run_id" if what == "run" else "optimization_id"
                _admin_action(
                    admin, f"{API}/jobs", {key: int(ident)},
                    lambda j: f"submitted job {j.get('job_id')} ({j.get('status')})",
                )  # fmt: skip
        running = [str(j["job_id"]) for j in jobs if j.get("status") in ("PENDING", "RUNNING")]
        with right, st.form("stop"):
            job = st.selectbox("job", running or ["—"])
            if st.form_submit_button("Stop", disabled=not running):
                _admin_action(
                    admin, f"{API}/jobs/{job}/stop", {},
                    lambda j: f"stopping job {j.get('job_id', job)}",
                )  # fmt: skip


# --------------------------------------------------------------------------------- paper trading
def paper_sessions_frame(sessions: Sequence[Mapping[str, Any]]) -> Any:
    """The sessions table: status (with the kill switch's reason), steps, equity, last bar."""
    return pd.DataFrame([
        {
            "id": p["id"], "session": p["name"], "status": p["status"], "steps": p["steps"],
            "equity": p.get("equity"), "last bar": fmt_time(p.get("last_bar_time")),
            "updated": fmt_time(p.get("updated_at")), "reason": p.get("reason") or "",
        }
        for p in sessions
    ])  # fmt: skip


def paper_steps_frame(steps: Sequence[Mapping[str, Any]]) -> Any:
    """A session's equity curve (``time``, ``equity``, ``drawdown``) for :func:`_equity_charts`."""
    frame = pd.DataFrame(steps, columns=["time", "equity", "drawdown", "gross_exposure", "lag_s"])
    frame["time"] = _times(frame["time"])
    return frame


def paper_decisions_frame(decisions: Sequence[Mapping[str, Any]]) -> Any:
    """Recent decisions: target and action, or the reason there was none; model and explanation."""
    return pd.DataFrame([
        {
            "step": d["number"], "symbol": d["symbol"], "action": d["action"],
            "target": d.get("target"), "reason": d.get("reason") or "",
            "model": " ".join(x for x in (d.get("model"), d.get("model_version")) if x),
            "latency ms": d.get("latency_ms"),
            "explanation": fmt(d["explanation"]) if d.get("explanation") else "",
        }
        for d in decisions
    ])  # fmt: skip


def render_paper(api: ApiClient) -> None:
    st.title("Paper trading")
    sessions = api.pages(f"{API}/paper/sessions", cap=ROW_CAP, limit=500)
    if not sessions:
        st.info("No paper sessions yet: `raytrader paper run --config session.yaml`.")
        return
    _grid(paper_sessions_frame(sessions))
    st.subheader("Session")
    one = _pick("session", sessions, lambda p: f"{p['name']} ({p['status']})", "paper")
    detail = api.get(f"{API}/paper/sessions/{one['id']}")
    peak = detail.get("peak_equity")
    equity = detail.get("equity")
    drawdown = (equity / peak - 1.0) if equity is not None and peak else None
    _metrics_row([
        ("status", detail["status"]), ("equity", equity), ("drawdown", drawdown),
        ("steps", detail["steps"]), ("last bar", fmt_time(detail.get("last_bar_time"))),
    ])  # fmt: skip
    if detail.get("reason"):
        (st.error if detail["status"] in ("halting", "halted") else st.caption)(detail["reason"])
    steps = api.pages(f"{API}/paper/sessions/{one['id']}/steps", cap=STEP_CAP, limit=5000)
    if steps:
        _equity_charts(paper_steps_frame(steps))
    left, right = st.columns([1, 2])
    with left:
        st.markdown("**Positions**")
        positions = detail.get("positions") or []
        if positions:
            _table(pd.DataFrame(positions, columns=["symbol", "units", "price", "value"]))
        else:
            st.caption("No step yet.")
    with right:
        st.markdown("**Recent decisions**")
        recent = api.get(f"{API}/paper/sessions/{one['id']}/decisions", limit=50)["items"]
        if recent:
            _grid(paper_decisions_frame(recent))
        else:
            st.caption("No decisions yet.")
    st.markdown("**Fills**")
    fills = api.get(f"{API}/paper/sessions/{one['id']}/fills", limit=100)["items"]
    if fills:
        _grid(
            pd.DataFrame(
                fills, columns=["number", "symbol", "units", "price", "commission", "reason"]
            )
        )
    else:
        st.caption("No fills yet.")


#: (title, url path, icon, render) of every page, in the navigation's order
PAGES: tuple[tuple[str, str, str, Callable[[ApiClient], None]], ...] = (
    ("Runs", "runs", ":material/list:", render_runs),
    ("Episode", "episode", ":material/timeline:", render_episode),
    ("Backtests", "backtests", ":material/show_chart:", render_backtests),
    ("Optimization", "optimization", ":material/tune:", render_optimization),
    ("Evaluations", "evaluations", ":material/fact_check:", render_evaluations),
    ("Paper trading", "paper", ":material/currency_exchange:", render_paper),
    ("Models", "models", ":material/inventory_2:", render_models),
    ("System", "system", ":material/monitor_heart:", render_system),
)
