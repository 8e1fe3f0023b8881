"""The Feast feature repo (``pipelines/feature_repo``) from Python: rows, offline files, store, serving.

Feast is imported inside the functions, so importing raytrader stays light.

**Identity: symbol and timeframe.** A feature row belongs to one bar of one symbol at one timeframe:
the view's entities are ``symbol`` and ``timeframe`` (both join keys), so GOOG's ``1d`` and ``1h``
rows are different rows offline and online, and a reader names the timeframe it wants (a 1h model
can never be handed 1m features).

**Rows.** :func:`feature_rows` turns bars and their :func:`~raytrader.features.compute_features`
output into the push/offline schema (:data:`ROW_COLUMNS`): ``symbol``, ``timeframe``,
``event_timestamp``, ``created``, ``bar_open_time``, the 70 features of ``bar_features_v1`` and
``warm``. The
``event_timestamp`` of a row is the bar's **close** time, ``bar open time + timeframe``: that is when
the row becomes known. Feast's point-in-time join returns, for an entity row at time t, the latest
row with ``event_timestamp <= t``, so stamping rows by bar open time would leak each bar into
training rows inside it. ``created`` is when the row was computed (Feast's tie-break between rows
of one ``event_timestamp``).

**Offline files.** :func:`append_offline` keeps one Parquet file per symbol and timeframe under
``<data dir>/bar_features_v1/`` (``GOOG.1d.parquet``; the feature view's ``FileSource``), keyed by
``(symbol, timeframe, event_timestamp)``: appending a key again replaces the stored row, never
duplicates it.
Each write goes to a hidden temporary file that is fsynced and renamed into place, under an
exclusive lock per symbol file, so readers see the old or the new file, never half of one.

**Profiles and settings.** ``store("redis")`` loads ``feature_store.yaml`` (Redis online store, the
local stack), ``store("sqlite")`` loads ``feature_store.sqlite.yaml`` (SQLite online store: tests and
the embedded no-stack mode); both share the definitions, the SQL (sqlite) registry and the file
offline store under the data dir. The yaml files name two variables, filled from the arguments of
:func:`store`, else the environment, else a default:

* ``RAYTRADER_FEAST_DATA``: the data dir (``registry.db``, ``online.db`` of the sqlite profile, the
  offline Parquet files); created by :func:`store`.
* ``RAYTRADER_REDIS_CONNECTION``: Feast's ``host:port[,db=N][,password=...][,ssl=true]``; a
  ``redis://`` / ``rediss://`` URL is converted. A caller that knows the connection passes it:
  ``store("redis", redis=...)``.

Unset, both come from :mod:`raytrader.settings`: the local stack's when it has run, else
``~/.cache/raytrader/feast`` and ``localhost:6379`` in local mode, and an error naming the variable
in cluster mode.

``RAYTRADER_FEAST_REPO`` overrides the feature repo directory (default: ``pipelines/feature_repo``
in the source tree). Feast itself expands the yaml with :func:`os.path.expandvars`, which leaves an
unset variable in place literally, so the bare ``feast`` CLI needs both variables exported (with
``RAYTRADER_FEAST_DATA`` unset it fails with ``sqlite3.OperationalError: unable to open database
file``, the registry URL being ``sqlite:///${RAYTRADER_FEAST_DATA}/registry.db``); or run
``python -m raytrader.features.feast_repo [--profile sqlite] <feast args>``, which fills in the
defaults (and :func:`feast_env` gives the environment for a subprocess).
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import os
import re
import sys
import uuid
import weakref
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import quote, unquote, urlsplit

import numpy as np
import pandas as pd

from raytrader import contract, settings
from raytrader.data.atomic import fsync_dir, write_parquet_atomic
from raytrader.data.bars import Bars
from raytrader.data.timeframe import Timeframe
from raytrader.errors import ConfigError, StoreError
from raytrader.features.bar_features_v1 import BAR_FEATURES_V1
from raytrader.features.engine import WARM_COLUMN

if TYPE_CHECKING:
    import pyarrow as pa
    from feast import (
        Entity,
        FeatureService,
        FeatureStore,
        FeatureView,
        FileSource,
        PushSource,
    )
    from feast.data_source import PushMode

# ---- names shared with pipelines/feature_repo/definitions.py ----------------------------------------

ENTITY = "symbol"
TIMEFRAME = "timeframe"
#: the join keys of a feature row: which instrument, at which bar length
ENTITY_KEYS = (ENTITY, TIMEFRAME)
FEATURE_VIEW = BAR_FEATURES_V1.name
PUSH_SOURCE = f"{FEATURE_VIEW}_push"
FEATURE_SERVICE = contract.FEATURE_SERVICE
EVENT_TIMESTAMP = "event_timestamp"
CREATED = "created"
BAR_OPEN_TIME = "bar_open_time"
FEATURE_NAMES: tuple[str, ...] = tuple(BAR_FEATURES_V1.names)
#: the push / offline schema, in this order
ROW_COLUMNS: tuple[str, ...] = (
    ENTITY,
    TIMEFRAME,
    EVENT_TIMESTAMP,
    CREATED,
    BAR_OPEN_TIME,
    *FEATURE_NAMES,
    WARM_COLUMN,
)
#: the columns a feature service returns (everything the view serves but the entity key)
_UTC_NS = pd.DatetimeTZDtype("ns", "UTC")
SERVED_COLUMNS: tuple[str, ...] = (*FEATURE_NAMES, WARM_COLUMN, BAR_OPEN_TIME)
KEY = (ENTITY, TIMEFRAME, EVENT_TIMESTAMP)

# ---- repo location, profiles, settings --------------------------------------------------------------

REPO_ENV = settings.FEAST_REPO_ENV
DATA_ENV = settings.FEAST_DATA_ENV
REDIS_ENV = settings.REDIS_ENV
#: pipelines/feature_repo in the source tree (src/raytrader/features/ -> repo root)
DEFAULT_REPO_DIR = Path(__file__).resolve().parents[3] / "pipelines" / "feature_repo"
#: profile name -> yaml file in the repo dir
PROFILES: dict[str, str] = {
    "redis": "feature_store.yaml",
    "sqlite": "feature_store.sqlite.yaml",
}


def repo_dir(explicit: str | os.PathLike[str] | None = None) -> Path:
    """The feature repo: ``explicit``, else ``$RAYTRADER_FEAST_REPO``, else :data:`DEFAULT_REPO_DIR`
    (:func:`raytrader.settings.feast_repo`)."""
    return settings.feast_repo(explicit) or DEFAULT_REPO_DIR


#: the feature repo as resolved at import time (see :func:`repo_dir`)
REPO_DIR = repo_dir()


def data_dir(explicit: str | os.PathLike[str] | None = None) -> Path:
    """The data dir: ``explicit``, else ``$RAYTRADER_FEAST_DATA``, else (local mode)
    ``~/.cache/raytrader/feast`` (:func:`raytrader.settings.feast_data`)."""
    return settings.feast_data(explicit)


def offline_dir(data: str | os.PathLike[str] | None = None) -> Path:
    """The directory of the offline Parquet files (the feature view's batch source)."""
    return data_dir(data) / FEATURE_VIEW


def redis_connection(explicit: str | None = None) -> str:
    """Feast's Redis connection string: ``explicit``, else ``$RAYTRADER_REDIS_CONNECTION``, else
    ``localhost:6379``. A ``redis://`` / ``rediss://`` URL is converted to Feast's
    ``host:port,db=N,username=..,password=..,ssl=true`` form."""
    value = settings.redis_connection(explicit).strip()
    if "://" not in value:
        return value
    url = urlsplit(value)
    if url.scheme not in ("redis", "rediss") or not url.hostname:
        raise ConfigError(f"Redis connection {value!r}: expected redis://host:port[/db]")
    parts = [f"{url.hostname}:{url.port or 6379}"]
    db = url.path.strip("/")
    if db:
        if not db.isdigit():
            raise ConfigError(f"Redis connection {value!r}: database {db!r} is not a number")
        parts.append(f"db={db}")
    for key, raw in (("username", url.username), ("password", url.password)):
        if raw:
            text = unquote(raw)
            if "," in text:
                raise ConfigError(f"Redis connection: a {key} with ',' cannot be passed to Feast")
            parts.append(f"{key}={text}")
    if url.scheme == "rediss":
        parts.append("ssl=true")
    return ",".join(parts)


def feast_env(
    *,
    data: str | os.PathLike[str] | None = None,
    redis: str | None = None,
    base: Mapping[str, str] | None = None,
    with_redis: bool = True,
) -> dict[str, str]:
    """``base`` (default ``os.environ``) with both yaml variables set (see the module docstring);
    ``with_redis=False`` (a profile without Redis) leaves the connection out, so cluster mode
    does not ask for one."""
    env = dict(os.environ if base is None else base)
    env[DATA_ENV] = str(data_dir(data))
    if with_redis:
        env[REDIS_ENV] = redis_connection(redis)
    return env


_VAR_RE = re.compile(r"\$(\w+|\{[^}]*\})", re.ASCII)


def expand_vars(text: str, env: Mapping[str, str]) -> str:
    """:func:`os.path.expandvars` over ``env``: ``$VAR``/``${VAR}`` replaced, unset ones left alone
    (what Feast does with ``feature_store.yaml``)."""

    def sub(m: re.Match[str]) -> str:
        name = m.group(1).removeprefix("{").removesuffix("}")
        return env.get(name, m.group(0))

    return _VAR_RE.sub(sub, text)


def yaml_file(profile: str | os.PathLike[str] = "redis", repo: Path | None = None) -> Path:
    """The yaml of a profile name (:data:`PROFILES`), or ``profile`` itself if it is a path."""
    if isinstance(profile, str) and profile in PROFILES:
        return (repo or repo_dir()) / PROFILES[profile]
    path = Path(profile)
    if path.suffix not in (".yaml", ".yml"):
        raise ConfigError(
            f"unknown Feast profile {str(profile)!r}: use one of {sorted(PROFILES)} or a yaml path"
        )
    return path.expanduser().resolve()


# ---- definitions ------------------------------------------------------------------------------------


class Definitions(NamedTuple):
    """The Feast objects of the repo, as ``definitions.build(data_dir)`` returns them."""

    entity: Entity
    timeframe: Entity
    batch_source: FileSource
    push_source: PushSource
    feature_view: FeatureView
    feature_service: FeatureService


def definitions(
    data: str | os.PathLike[str] | None = None, *, repo: str | os.PathLike[str] | None = None
) -> Definitions:
    """Load ``<repo>/definitions.py`` and build its objects for the data dir ``data``."""
    path = repo_dir(repo) / "definitions.py"
    if not path.is_file():
        raise ConfigError(f"no Feast definitions at {path} (set {REPO_ENV}?)")
    spec = importlib.util.spec_from_file_location("_raytrader_feast_definitions", path)
    if spec is None or spec.loader is None:  # pragma: no cover - a .py file always has a loader
        raise ConfigError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    built = module.build(data_dir(data))
    if not isinstance(built, Definitions):
        raise ConfigError(f"{path}: build() must return raytrader's Definitions")
    return built


# ---- rows -------------------------------------------------------------------------------------------


def _utc_now() -> pd.Timestamp:
    return pd.Timestamp.now(tz="UTC")


def _utc(value: datetime | pd.Timestamp | str, what: str) -> pd.Timestamp:
    ts = pd.Timestamp(value)
    if ts.tzinfo is None:
        raise ConfigError(f"{what} {value!r} is timezone-naive; pass a timezone-aware (UTC) time")
    return ts.tz_convert("UTC")


def feature_rows(
    bars: Bars,
    features: pd.DataFrame,
    *,
    created: datetime | pd.Timestamp | None = None,
) -> pd.DataFrame:
    """Push/offline rows (:data:`ROW_COLUMNS`, one per bar) for ``bars`` and their features.

    ``features`` is ``compute_features(bars)`` (same index; the bar_features_v1 columns and
    ``warm``). ``event_timestamp`` is the bar close (open + timeframe), ``bar_open_time`` the open,
    ``created`` the given time or now (UTC). Rows before warm-up are kept (``warm`` is False and
    the unwarmed features are NaN).
    """
    if not features.index.equals(bars.index):
        raise ConfigError(
            f"features ({len(features)} rows) are not indexed like the bars of {bars.symbol} "
            f"({len(bars)} bars); pass compute_features(bars)"
        )
    missing = [c for c in (*FEATURE_NAMES, WARM_COLUMN) if c not in features.columns]
    if missing:
        raise ConfigError(f"features lack {len(missing)} bar_features_v1 column(s): {missing[:5]}")
    stamp = _utc_now() if created is None else _utc(created, "created")
    opens = bars.index.tz_convert("UTC").as_unit("ns")
    n = len(bars)
    block = np.empty((n, len(FEATURE_NAMES)), dtype=np.float64, order="F")
    for j, name in enumerate(FEATURE_NAMES):
        block[:, j] = features[name].to_numpy(dtype=np.float64)
    return _rows_frame(
        np.full(n, bars.symbol, dtype=object),
        np.full(n, bars.timeframe.name, dtype=object),
        opens,
        opens + bars.timeframe.delta,
        block,
        features[WARM_COLUMN].to_numpy(dtype=bool),
        stamp,
    )


def latest_rows(
    items: Sequence[tuple[Bars, pd.DataFrame]], *, created: datetime | pd.Timestamp | None = None
) -> pd.DataFrame:
    """The row of the newest bar of each ``(bars, features)`` pair, as one frame: what the online
    store needs per streaming micro-batch, without building every row first."""
    stamp = _utc_now() if created is None else _utc(created, "created")
    n = len(items)
    block = np.empty((n, len(FEATURE_NAMES)), dtype=np.float64)
    warm = np.empty(n, dtype=bool)
    opens = np.empty(n, dtype=np.int64)
    events = np.empty(n, dtype=np.int64)
    symbols = np.empty(n, dtype=object)
    timeframes = np.empty(n, dtype=object)
    for i, (bars, features) in enumerate(items):
        if len(bars) == 0 or not features.index.equals(bars.index):
            raise ConfigError(f"latest_rows: features of {bars.symbol} not indexed like its bars")
        last = features.iloc[-1]
        block[i] = last[list(FEATURE_NAMES)].to_numpy(dtype=np.float64)
        warm[i] = bool(last[WARM_COLUMN])
        opens[i] = bars.index[-1].value
        events[i] = opens[i] + bars.timeframe.delta.value
        symbols[i] = bars.symbol
        timeframes[i] = bars.timeframe.name
    return _rows_frame(
        symbols,
        timeframes,
        pd.DatetimeIndex(opens.astype("datetime64[ns]")).tz_localize("UTC"),
        pd.DatetimeIndex(events.astype("datetime64[ns]")).tz_localize("UTC"),
        block,
        warm,
        stamp,
    )


def _rows_frame(
    symbols: np.ndarray,
    timeframes: np.ndarray,
    opens: pd.DatetimeIndex,
    events: pd.DatetimeIndex,
    block: np.ndarray,
    warm: np.ndarray,
    stamp: pd.Timestamp,
) -> pd.DataFrame:
    """Rows in :data:`ROW_COLUMNS` order and canonical dtypes around one feature block."""
    n = len(symbols)
    out = pd.DataFrame(block, columns=list(FEATURE_NAMES), copy=False)
    out.insert(0, ENTITY, symbols)
    out.insert(1, TIMEFRAME, timeframes)
    out.insert(2, EVENT_TIMESTAMP, events)
    created = np.full(n, stamp.tz_convert("UTC").value, dtype=np.int64).astype("datetime64[ns]")
    out.insert(3, CREATED, pd.DatetimeIndex(created).tz_localize("UTC"))
    out.insert(4, BAR_OPEN_TIME, opens)
    out[WARM_COLUMN] = warm
    return out


# ---- offline Parquet files --------------------------------------------------------------------------


@functools.cache
def _arrow_schema() -> pa.Schema:
    import pyarrow as pa

    ts = pa.timestamp("us", tz="UTC")
    return pa.schema(
        [
            pa.field(ENTITY, pa.string(), nullable=False),
            pa.field(TIMEFRAME, pa.string(), nullable=False),
            pa.field(EVENT_TIMESTAMP, ts, nullable=False),
            pa.field(CREATED, ts, nullable=False),
            pa.field(BAR_OPEN_TIME, ts, nullable=False),
            *(pa.field(name, pa.float64()) for name in FEATURE_NAMES),
            pa.field(WARM_COLUMN, pa.bool_(), nullable=False),
        ]
    )


def check_rows(rows: pd.DataFrame) -> pd.DataFrame:
    """``rows`` in :data:`ROW_COLUMNS` order with canonical dtypes; raises ConfigError otherwise."""
    missing = [c for c in ROW_COLUMNS if c not in rows.columns]
    extra = [c for c in rows.columns if c not in ROW_COLUMNS]
    if missing or extra:
        hint = (
            " (rows written before feature rows were keyed by timeframe: delete the data dir's "
            f"{FEATURE_VIEW}/ files and `raytrader features backfill` them)"
            if missing == [TIMEFRAME]
            else ""
        )
        raise ConfigError(
            f"feature rows must have exactly the columns of feature_rows(); missing {missing[:5]}, "
            f"unexpected {extra[:5]}{hint}"
        )
    if tuple(rows.columns) == ROW_COLUMNS and isinstance(rows.index, pd.RangeIndex):
        out = rows  # already in order: only the dtypes need checking (the streaming hot path)
    else:
        out = rows.loc[:, list(ROW_COLUMNS)].reset_index(drop=True)
    for col in (EVENT_TIMESTAMP, CREATED, BAR_OPEN_TIME):
        values = out[col]
        if not isinstance(values.dtype, pd.DatetimeTZDtype):
            raise ConfigError(f"column {col!r} must be timezone-aware UTC, got {values.dtype}")
        if values.dtype != _UTC_NS:
            if out is rows:
                out = rows.copy(deep=False)
            out[col] = values.dt.tz_convert("UTC").dt.as_unit("ns")
    if out[list(KEY)].isna().any().any():
        raise ConfigError(f"{ENTITY!r}, {TIMEFRAME!r} and {EVENT_TIMESTAMP!r} must not be null")
    return out


def offline_file(symbol: str, timeframe: str, data: str | os.PathLike[str] | None = None) -> Path:
    """The Parquet file of ``symbol`` at ``timeframe`` (the symbol percent-encoded:
    ``BTC/USDT``, ``1h`` -> ``BTC%2FUSDT.1h.parquet``)."""
    if not symbol:
        raise ConfigError("symbol must be a non-empty string")
    tf = Timeframe.parse(timeframe).name
    name = quote(symbol, safe="")
    if name[0] in "._":  # Parquet readers skip hidden files: encode a leading '.' or '_' too
        name = f"%{ord(name[0]):02X}{name[1:]}"
    return offline_dir(data) / f"{name}.{tf}.parquet"


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    import fcntl

    # hidden, so the Parquet reader (pyarrow ignores '.'/'_' prefixes) never sees it
    lock = path.with_name(f".{path.name}.lock")
    with open(lock, "a+b") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def append_offline(rows: pd.DataFrame, data: str | os.PathLike[str] | None = None) -> list[Path]:
    """Merge ``rows`` into the per-symbol offline files; returns the files written.

    Keyed by ``(symbol, event_timestamp)``: a key already stored is replaced by the new row (the
    last one wins within ``rows`` too), never duplicated. Files stay sorted by event time.
    """

    new = check_rows(rows)
    directory = offline_dir(data)
    directory.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for (symbol, tf), group in new.groupby(list(ENTITY_KEYS), sort=True):
        final = offline_file(str(symbol), str(tf), data)
        with _locked(final):
            merged = group
            stored = [f for f in _symbol_files(str(symbol), str(tf), data) if f != final]
            if final.exists() or stored:
                merged = pd.concat(
                    [read_offline(str(symbol), data, timeframe=str(tf)), group], ignore_index=True
                )
            merged = (
                merged.drop_duplicates(list(KEY), keep="last")
                .sort_values(EVENT_TIMESTAMP, kind="stable")
                .reset_index(drop=True)
            )
            _write_parquet(merged, final, str(symbol))
            for part in stored:  # folded into the file just written
                with contextlib.suppress(FileNotFoundError):
                    part.unlink()
        fsync_dir(directory)
        written.append(final)
    return written


def _symbol_files(
    symbol: str, timeframe: str, data: str | os.PathLike[str] | None = None
) -> list[Path]:
    """The compacted file of ``symbol`` at ``timeframe`` and its appended parts (see
    :func:`append_offline_part`)."""
    return _main_and_parts(offline_file(symbol, timeframe, data))


def _main_and_parts(main: Path) -> list[Path]:
    parts = _parts(main)
    return ([main] if main.exists() else []) + parts


def _parts(main: Path) -> list[Path]:
    return sorted(main.parent.glob(f"{main.stem}.part-*.parquet"))


def read_offline(
    symbol: str | None = None,
    data: str | os.PathLike[str] | None = None,
    *,
    timeframe: str | None = None,
) -> pd.DataFrame:
    """The stored offline rows (of one symbol, or all; of one timeframe, or all), sorted by
    symbol, timeframe and event time; a key stored twice (a part replayed after a crash) counts
    once, the latest ``created`` wins."""
    import pyarrow.parquet as pq

    if symbol is not None and timeframe is not None:
        files = _symbol_files(symbol, timeframe, data)
    else:
        files = sorted(offline_dir(data).glob("[!._]*.parquet"))
    frames = [_read_file(pq, f) for f in files if f.exists()]
    if symbol is not None:
        frames = [f[f[ENTITY] == symbol] for f in frames]
    if timeframe is not None:
        tf = Timeframe.parse(timeframe).name
        frames = [f[f[TIMEFRAME] == tf] for f in frames]
    frames = [f for f in frames if len(f)]
    if not frames:
        return check_rows(pd.DataFrame({c: pd.Series(dtype=_empty_dtype(c)) for c in ROW_COLUMNS}))
    out = pd.concat(frames, ignore_index=True).sort_values([*KEY, CREATED], kind="stable")
    out = out.drop_duplicates(list(KEY), keep="last")
    return out.reset_index(drop=True)


def _read_file(pq: Any, path: Path) -> pd.DataFrame:
    try:
        return check_rows(pq.read_table(path).to_pandas())
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def _to_arrow(frame: pd.DataFrame) -> pa.Table:
    """Offline rows to Arrow column by column (4x cheaper than ``Table.from_pandas``, which the
    streaming writer would otherwise spend most of its time in); NaN features become nulls, as
    ``from_pandas`` makes them."""
    import pyarrow as pa

    schema = _arrow_schema()
    arrays = []
    for f in schema:
        col = frame[f.name]
        if pa.types.is_timestamp(f.type):
            micros = col.dt.tz_convert("UTC").dt.as_unit("us").array.asi8
            arrays.append(pa.array(micros, pa.int64()).cast(f.type))
        else:
            arrays.append(pa.array(col.to_numpy(), f.type, from_pandas=True))
    return pa.Table.from_arrays(arrays, schema=schema)


def _write_parquet(frame: pd.DataFrame, final: Path, what: str) -> None:
    """Atomically write ``frame`` (offline row schema) to ``final``: temp file, fsync, rename."""
    import pyarrow as pa

    try:
        table = _to_arrow(frame)
    except (pa.ArrowException, ValueError) as exc:
        raise StoreError(f"cannot convert feature rows of {what}: {exc}") from exc
    write_parquet_atomic(table, final, what=f"feature rows of {what}")


def append_offline_part(
    rows: pd.DataFrame, data: str | os.PathLike[str] | None = None
) -> list[Path]:
    """Append ``rows`` as new part files (one per symbol): O(rows), for the streaming consumer.

    Readers (:func:`read_offline`, Feast's point-in-time join via ``created``) count a key once;
    :func:`compact_offline` folds the parts into the symbol's file.
    """
    new = check_rows(rows)
    directory = offline_dir(data)
    directory.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for (symbol, tf), group in new.groupby(list(ENTITY_KEYS), sort=True):
        main = offline_file(str(symbol), str(tf), data)
        stamp = group[EVENT_TIMESTAMP]
        part = main.with_name(
            f"{main.stem}.part-{stamp.min().value:019d}-{stamp.max().value:019d}-"
            f"{uuid.uuid4().hex[:8]}.parquet"
        )
        if not np.all(np.diff(stamp.array.asi8) > 0):  # the consumer's rows already are
            group = group.drop_duplicates(list(KEY), keep="last").sort_values(EVENT_TIMESTAMP)
        _write_parquet(group.reset_index(drop=True), part, str(symbol))
        written.append(part)
    fsync_dir(directory)
    return written


def compact_offline(
    symbol: str,
    timeframe: str,
    data: str | os.PathLike[str] | None = None,
    *,
    drop_parts_after: pd.Timestamp | None = None,
) -> Path | None:
    """Fold ``symbol``'s parts at ``timeframe`` into its file (one row per key, latest ``created``
    wins). With ``drop_parts_after``, rows of the **parts** (what the streaming consumer appends)
    whose bar opened after it are dropped: rows a consumer wrote ahead of a crash, which its replay
    rewrites. Rows of the compacted file itself — the batch path's (:func:`append_offline`,
    ``raytrader features backfill``) and earlier compactions — are never dropped. The new file is in
    place before the parts are removed, so a crash in between leaves duplicates that readers
    already count once."""
    import pyarrow.parquet as pq

    main = offline_file(symbol, timeframe, data)
    if not main.parent.is_dir():
        return None
    with _locked(main):  # parts are listed under the lock: a concurrent fold removes them
        parts = _parts(main)
        if not parts:
            return main if main.exists() else None
        frames = [_read_file(pq, f) for f in parts]
        if drop_parts_after is not None:
            frames = [f[f[BAR_OPEN_TIME] <= drop_parts_after] for f in frames]
        if main.exists():
            frames.insert(0, _read_file(pq, main))
        rows = (
            pd.concat(frames, ignore_index=True)
            .sort_values([*KEY, CREATED], kind="stable")
            .drop_duplicates(list(KEY), keep="last")
        )
        _write_parquet(rows.reset_index(drop=True), main, f"{symbol} {timeframe}")
        for f in parts:
            with contextlib.suppress(FileNotFoundError):
                f.unlink()
        fsync_dir(main.parent)
    return main


def _empty_dtype(col: str) -> Any:
    if col in (EVENT_TIMESTAMP, CREATED, BAR_OPEN_TIME):
        return pd.DatetimeTZDtype("ns", "UTC")
    if col in ENTITY_KEYS:
        return object
    return bool if col == WARM_COLUMN else np.float64


# ---- the store --------------------------------------------------------------------------------------

# the data dir each store was built for (apply() needs it for the FileSource path)
_DATA_DIRS: weakref.WeakKeyDictionary[FeatureStore, Path] = weakref.WeakKeyDictionary()


def store(
    profile: str | os.PathLike[str] = "redis",
    *,
    repo: str | os.PathLike[str] | None = None,
    data: str | os.PathLike[str] | None = None,
    redis: str | None = None,
) -> FeatureStore:
    """A :class:`feast.FeatureStore` for a profile (``"redis"``, ``"sqlite"``) or a yaml path.

    ``data`` (data dir) and ``redis`` (Feast connection string or ``redis://`` URL, e.g. the
    local stack's Redis) override ``$RAYTRADER_FEAST_DATA`` / ``$RAYTRADER_REDIS_CONNECTION``; the
    environment is not modified. The data dir is created. Building the store connects to nothing.
    """
    import yaml
    from feast import FeatureStore
    from feast.repo_config import RepoConfig
    from pydantic import ValidationError

    root = repo_dir(repo)
    path = yaml_file(profile, root)
    if not path.is_file():
        raise ConfigError(f"no Feast config at {path}")
    text = path.read_text()
    env = feast_env(data=data, redis=redis, with_redis=REDIS_ENV in text)
    raw = yaml.safe_load(expand_vars(text, env))
    unexpanded = sorted(set(re.findall(r"\$\{\w+\}", yaml.safe_dump(raw))))
    if unexpanded:
        raise ConfigError(f"{path}: unset variable(s) {unexpanded}")
    directory = Path(env[DATA_ENV])
    directory.mkdir(parents=True, exist_ok=True)
    try:
        config = RepoConfig(**raw)
    except ValidationError as exc:
        raise ConfigError(f"invalid Feast config {path}: {exc}") from exc
    config.repo_path = root
    fs = FeatureStore(repo_path=str(root), config=config)
    _DATA_DIRS[fs] = directory
    return fs


def store_data_dir(fs: FeatureStore) -> Path:
    """The data dir ``fs`` was built for (:func:`data_dir` for a store not made by :func:`store`)."""
    return _DATA_DIRS.get(fs) or data_dir()


def apply(fs: FeatureStore, *, repo: str | os.PathLike[str] | None = None) -> Definitions:
    """Register the repo's objects (built for the store's data dir) in ``fs``; returns them.

    Like ``feast apply`` but additive: objects removed from definitions.py are not deleted.
    """
    defs = definitions(store_data_dir(fs), repo=repo)
    offline_dir(store_data_dir(fs)).mkdir(parents=True, exist_ok=True)
    fs.apply(list(defs))
    return defs


def materialize(
    fs: FeatureStore, start: datetime | pd.Timestamp, end: datetime | pd.Timestamp
) -> None:
    """Load the latest row per symbol with ``start <= event_timestamp < end`` into the online store."""
    t0, t1 = _utc(start, "start"), _utc(end, "end")
    if t1 <= t0:
        raise ConfigError(f"materialize: end {t1} must be after start {t0}")
    fs.materialize(
        start_date=t0.to_pydatetime(), end_date=t1.to_pydatetime(), feature_views=[FEATURE_VIEW]
    )


_PUSH_MODES = ("online", "offline", "online_and_offline")


def push(fs: FeatureStore, rows: pd.DataFrame, *, to: PushMode | str = "online") -> None:
    """Push feature rows (the live path): ``to`` is ``"online"``, ``"offline"``,
    ``"online_and_offline"`` or a :class:`feast.data_source.PushMode`.

    The offline leg goes through :func:`append_offline` (idempotent, atomic, one file per symbol)
    rather than Feast's file-store ``offline_write_batch``, which appends duplicates in place to a
    single file; the online leg is Feast's push to the online store. Note that the Redis store
    ignores a row whose ``event_timestamp`` is not newer than the stored one (a correction of the
    latest bar must be materialized or rewritten by the caller), while SQLite always overwrites.
    """
    from feast.data_source import PushMode

    mode = to.name.lower() if isinstance(to, PushMode) else str(to).lower()
    if mode not in _PUSH_MODES:
        raise ConfigError(f"push: unknown mode {to!r}; use one of {list(_PUSH_MODES)}")
    frame = check_rows(rows)
    if mode in ("offline", "online_and_offline"):
        append_offline(frame, store_data_dir(fs))
    if mode in ("online", "online_and_offline") and len(frame):
        store, view = _online_target(fs)
        store.online_write_batch(fs.config, view, online_records(frame), progress=None)


_ONLINE: weakref.WeakKeyDictionary[FeatureStore, tuple[Any, Any]] = weakref.WeakKeyDictionary()


def _online_target(fs: FeatureStore) -> tuple[Any, Any]:
    """The online store (Feast's own class for the configured type) and the feature view the push
    source feeds, resolved once per FeatureStore."""
    hit = _ONLINE.get(fs)
    if hit is None:
        from feast.infra.online_stores.helpers import get_online_store_from_config

        hit = (
            get_online_store_from_config(fs.config.online_store),
            fs.get_feature_view(FEATURE_VIEW),
        )
        _ONLINE[fs] = hit
    return hit


def online_records(rows: pd.DataFrame) -> list[tuple[Any, dict[str, Any], datetime, datetime]]:
    """``rows`` (:func:`check_rows` order) as the records Feast's ``OnlineStore.online_write_batch``
    takes — the same ones ``FeatureStore.push`` builds (a test compares them with Feast's own
    conversion): a NaN feature is a null value, ``warm`` a bool, ``bar_open_time`` a Unix
    timestamp in seconds, event and created times naive UTC datetimes.

    ``push`` hands these straight to the online store instead of calling
    ``FeatureStore.push``, whose generic per-cell conversion and per-call registry look-ups (in
    Feast 0.67 it re-lists the feature services, uncached, on every push for its precompute
    hook) cost about 20 ms per streaming micro-batch against under 2 ms for this."""
    from feast.protos.feast.types.Value_pb2 import Value

    n = len(rows)
    block = rows[list(FEATURE_NAMES)].to_numpy(dtype=np.float64)
    warm = rows[WARM_COLUMN].to_numpy(dtype=bool).tolist()
    opens = (rows[BAR_OPEN_TIME].array.asi8 // 1_000_000_000).tolist()
    events = pd.DatetimeIndex(rows[EVENT_TIMESTAMP]).tz_convert(None).to_pydatetime()
    created = pd.DatetimeIndex(rows[CREATED]).tz_convert(None).to_pydatetime()
    symbols = rows[ENTITY].tolist()
    timeframes = rows[TIMEFRAME].tolist()
    out = []
    for i in range(n):
        values = {
            name: Value(double_val=x) if x == x else Value()  # x != x: NaN -> null
            for name, x in zip(FEATURE_NAMES, block[i].tolist(), strict=True)
        }
        values[WARM_COLUMN] = Value(bool_val=warm[i])
        values[BAR_OPEN_TIME] = Value(unix_timestamp_val=opens[i])
        out.append((entity_key(symbols[i], timeframes[i]), values, events[i], created[i]))
    return out


def entity_key(symbol: str, timeframe: str) -> Any:
    """Feast's online-store key of one symbol at one timeframe."""
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey
    from feast.protos.feast.types.Value_pb2 import Value

    return EntityKey(
        join_keys=list(ENTITY_KEYS),
        entity_values=[Value(string_val=symbol), Value(string_val=timeframe)],
    )


def online_features(fs: FeatureStore, symbols: Sequence[str], timeframe: str) -> pd.DataFrame:
    """The latest ``ensemble_v1`` row of each symbol at ``timeframe`` from the online store,
    indexed by symbol.

    Columns: the features, ``warm``, ``bar_open_time`` and ``event_timestamp`` (the bar close);
    a symbol with nothing stored has nulls.
    """
    tf = Timeframe.parse(timeframe).name
    service = fs.get_feature_service(FEATURE_SERVICE)
    response = fs.get_online_features(
        features=service, entity_rows=[{ENTITY: s, TIMEFRAME: tf} for s in symbols]
    )
    data = response.to_dict(include_event_timestamps=True)
    # "<feature>__ts" holds the row's event time in epoch seconds, 0 where nothing is stored
    seconds = pd.Series(data[f"{WARM_COLUMN}__ts"], dtype="int64")
    frame = pd.DataFrame({c: data[c] for c in (ENTITY, *SERVED_COLUMNS)})
    frame[WARM_COLUMN] = frame[WARM_COLUMN].astype("boolean")
    frame[BAR_OPEN_TIME] = pd.to_datetime(frame[BAR_OPEN_TIME], utc=True)
    frame[EVENT_TIMESTAMP] = pd.to_datetime(seconds.where(seconds > 0), unit="s", utc=True)
    return frame.set_index(ENTITY)


def online_rows(fs: FeatureStore, symbols: Sequence[str], timeframe: str) -> pd.DataFrame:
    """:func:`online_features` read straight from the online store (Feast's
    ``OnlineStore.online_read``, the call ``get_online_features`` ends in): the same frame
    (tested), without the per-call feature-service resolution and generic response conversion
    that cost ~10 ms a read against ~0.3 ms for this. The decision service reads with it."""
    tf = Timeframe.parse(timeframe).name
    store, view = _online_target(fs)
    keys = [entity_key(s, tf) for s in symbols]
    found = store.online_read(fs.config, view, keys, None)
    n = len(symbols)
    block = np.full((n, len(FEATURE_NAMES)), np.nan)
    warm = np.zeros(n, dtype=bool)
    known = np.zeros(n, dtype=bool)
    opens = np.zeros(n, dtype=np.int64)
    events = np.zeros(n, dtype=np.int64)
    where = {name: j for j, name in enumerate(FEATURE_NAMES)}
    for i, (event, values) in enumerate(found):
        # Redis answers a key it never stored with the epoch and every value unset: a row is
        # stored only if it has its bar's open time
        if event is None or not values or BAR_OPEN_TIME not in values:
            continue
        if values[BAR_OPEN_TIME].WhichOneof("val") is None:
            continue
        known[i] = True
        # the stores hand back naive-UTC or aware datetimes; whole seconds, as the SDK returns
        stamp = event if event.tzinfo is not None else event.replace(tzinfo=UTC)
        events[i] = int(stamp.timestamp())
        for name, value in values.items():
            kind = value.WhichOneof("val")
            if kind is None:
                continue
            if name == WARM_COLUMN:
                warm[i] = value.bool_val
            elif name == BAR_OPEN_TIME:
                opens[i] = value.unix_timestamp_val
            elif name in where:
                block[i, where[name]] = getattr(value, kind)
    index = pd.Index(list(symbols), name=ENTITY)
    frame = pd.DataFrame(block, columns=list(FEATURE_NAMES), index=index)
    frame[WARM_COLUMN] = pd.arrays.BooleanArray(warm, ~known)
    frame[BAR_OPEN_TIME] = pd.DatetimeIndex(opens * 1_000_000_000, tz="UTC").where(known)
    frame[EVENT_TIMESTAMP] = pd.DatetimeIndex(events * 1_000_000_000, tz="UTC").where(known)
    return frame


def training_frame(fs: FeatureStore, entity_df: pd.DataFrame) -> pd.DataFrame:
    """Point-in-time join of ``ensemble_v1`` onto ``entity_df`` (``symbol``, ``timeframe``,
    ``event_timestamp`` timezone-aware, plus any label columns), in the order of ``entity_df``.

    Each row gets the latest feature row of its symbol and timeframe with ``event_timestamp``
    (bar close) ``<=`` the entity time and within the view's TTL; none -> nulls.
    """
    for col in KEY:
        if col not in entity_df.columns:
            raise ConfigError(f"entity_df needs a {col!r} column")
    clash = [c for c in SERVED_COLUMNS if c in entity_df.columns]
    if clash:
        raise ConfigError(f"entity_df already has feature column(s) {clash[:5]}")
    ts = entity_df[EVENT_TIMESTAMP]
    if not isinstance(ts.dtype, pd.DatetimeTZDtype):
        raise ConfigError(f"entity_df[{EVENT_TIMESTAMP!r}] must be timezone-aware, got {ts.dtype}")
    frame = entity_df.reset_index(drop=True)
    frame[EVENT_TIMESTAMP] = ts.dt.tz_convert("UTC").dt.as_unit("ns").reset_index(drop=True)
    # Feast's file offline store keeps one result row per (symbol, event_timestamp) and drops
    # the other entity rows with the same key, whatever their other columns; so join the unique
    # keys only and merge the features back onto every entity row, in order
    keys = frame[list(KEY)].drop_duplicates(ignore_index=True)
    service = fs.get_feature_service(FEATURE_SERVICE)
    joined = fs.get_historical_features(entity_df=keys, features=service).to_df()
    joined[EVENT_TIMESTAMP] = joined[EVENT_TIMESTAMP].dt.tz_convert("UTC").dt.as_unit("ns")
    joined = joined.loc[:, [*KEY, *SERVED_COLUMNS]]
    joined[BAR_OPEN_TIME] = pd.to_datetime(joined[BAR_OPEN_TIME], utc=True).dt.as_unit("ns")
    joined[WARM_COLUMN] = joined[WARM_COLUMN].astype("boolean")
    out = frame.merge(joined, on=list(KEY), how="left", validate="many_to_one")
    if len(out) != len(frame):  # pragma: no cover - guarded by validate= above
        raise StoreError("historical retrieval changed the number of entity rows")
    return out


# ---- `python -m raytrader.features.feast_repo`: the feast CLI with raytrader's defaults -------------


def main(argv: Sequence[str] | None = None) -> int:
    """``[--profile redis|sqlite] <feast CLI args>``: run ``feast -c <repo> -f <profile yaml>``
    with ``RAYTRADER_FEAST_DATA`` / ``RAYTRADER_REDIS_CONNECTION`` defaulted (data dir created)."""
    args = list(sys.argv[1:] if argv is None else argv)
    profile = "redis"
    if args[:1] == ["--profile"] and len(args) >= 2:
        profile, args = args[1], args[2:]
    root = repo_dir()
    env = feast_env(with_redis=REDIS_ENV in yaml_file(profile, root).read_text())
    os.environ.update({k: env[k] for k in (DATA_ENV, REDIS_ENV) if k in env})
    offline_dir(env[DATA_ENV]).mkdir(parents=True, exist_ok=True)
    from feast.cli.cli import cli

    try:
        cli.main(
            args=["-c", str(root), "-f", str(yaml_file(profile, root)), *args], prog_name="feast"
        )
    except SystemExit as exc:  # click's standalone mode always exits
        return exc.code if isinstance(exc.code, int) else int(exc.code is not None)


if __name__ == "__main__":
    raise SystemExit(main())
