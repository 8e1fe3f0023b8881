"""The Feast feature repo (pipelines/feature_repo) and raytrader.features.feast_repo.

Everything runs on a temporary copy of the repo with the SQLite online store profile: no Redis, no
services. Covers: apply (Python and the feast CLI), the schema generated from BAR_FEATURES_V1,
offline rows -> materialize -> online features, push, point-in-time historical retrieval with the
bar-CLOSE event timestamp (no lookahead), and the idempotent, atomic offline writer.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from raytrader.data import Bars
from raytrader.errors import ConfigError
from raytrader.features import BAR_FEATURES_V1, WARM_COLUMN, compute_features
from raytrader.features import feast_repo as fr

CREATED_AT = pd.Timestamp("2024-01-02 03:04:05", tz="UTC")
EARLY = pd.Timestamp("2000-01-01", tz="UTC")
LATE = pd.Timestamp("2030-01-01", tz="UTC")
SERVED = [*BAR_FEATURES_V1.names, WARM_COLUMN, fr.BAR_OPEN_TIME]


def copy_repo(dest: Path) -> Path:
    shutil.copytree(fr.DEFAULT_REPO_DIR, dest, ignore=shutil.ignore_patterns("__pycache__", "data"))
    return dest


@pytest.fixture(scope="module")
def tmp_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_repo(tmp_path_factory.mktemp("feast") / "feature_repo")


@pytest.fixture(scope="module")
def goog_rows(goog: Bars) -> pd.DataFrame:
    return fr.feature_rows(goog, compute_features(goog), created=CREATED_AT)


@pytest.fixture(scope="module")
def goog_store(tmp_repo: Path, goog_rows: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory):
    """offline rows for GOOG -> apply -> materialize, on the SQLite profile."""
    data = tmp_path_factory.mktemp("feast_data")
    fr.append_offline(goog_rows, data)
    fs = fr.store("sqlite", repo=tmp_repo, data=data)
    fr.apply(fs, repo=tmp_repo)
    fr.materialize(fs, EARLY, LATE)
    return fs


def served_values(frame: pd.DataFrame) -> np.ndarray:
    return frame.loc[:, list(BAR_FEATURES_V1.names)].to_numpy(dtype=np.float64)


# ---- definitions and schema -------------------------------------------------------------------------


def test_definitions_cannot_drift_from_the_feature_set(tmp_path: Path) -> None:
    defs = fr.definitions(tmp_path)
    view = defs.feature_view
    assert [f.name for f in view.features] == SERVED
    assert list(fr.FEATURE_NAMES) == BAR_FEATURES_V1.names
    keys = ("symbol", "timeframe", "event_timestamp", "created", "bar_open_time")
    row_columns = (*keys, *BAR_FEATURES_V1.names, "warm")
    assert row_columns == fr.ROW_COLUMNS
    from feast.types import Bool, Float64, UnixTimestamp

    dtypes = {f.name: f.dtype for f in view.features}
    assert all(dtypes[n] == Float64 for n in BAR_FEATURES_V1.names)
    assert dtypes[WARM_COLUMN] == Bool
    assert dtypes[fr.BAR_OPEN_TIME] == UnixTimestamp
    assert view.entities == ["symbol", "timeframe"]
    assert defs.entity.join_key == "symbol"
    assert defs.timeframe.join_key == "timeframe"
    assert defs.push_source.name == "bar_features_v1_push"
    assert defs.push_source.batch_source is defs.batch_source
    assert defs.batch_source.timestamp_field == "event_timestamp"
    assert defs.batch_source.created_timestamp_column == "created"
    assert defs.batch_source.path == str(tmp_path.resolve() / "bar_features_v1")
    assert defs.feature_service.name == "ensemble_v1"
    assert [p.name for p in defs.feature_service.feature_view_projections] == ["bar_features_v1"]


def test_importing_the_layer_does_not_import_feast() -> None:
    code = "import sys, raytrader.features.feast_repo; print('feast' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "False"


def test_feature_rows_stamp_rows_at_the_bar_close(goog: Bars, goog_rows: pd.DataFrame) -> None:
    rows = goog_rows
    assert tuple(rows.columns) == fr.ROW_COLUMNS
    assert len(rows) == len(goog)
    assert (rows["symbol"] == "GOOG").all()
    assert (rows["timeframe"] == "1d").all()
    opens = pd.Series(goog.index)
    pd.testing.assert_series_equal(rows["bar_open_time"], opens, check_names=False)
    pd.testing.assert_series_equal(
        rows["event_timestamp"], opens + pd.Timedelta(days=1), check_names=False
    )
    assert (rows["created"] == CREATED_AT).all()
    assert str(rows["event_timestamp"].dtype) == "datetime64[ns, UTC]"
    assert rows[WARM_COLUMN].dtype == bool
    feats = compute_features(goog)
    np.testing.assert_array_equal(served_values(rows), served_values(feats))


def test_feature_rows_refuses_bad_inputs(goog: Bars, synthetic_bars) -> None:
    feats = compute_features(goog)
    with pytest.raises(ConfigError, match="not indexed like"):
        fr.feature_rows(goog, feats.iloc[1:])
    with pytest.raises(ConfigError, match="lack"):
        fr.feature_rows(goog, feats.drop(columns=["rsi_14"]))
    with pytest.raises(ConfigError, match="naive"):
        fr.feature_rows(goog, feats, created=pd.Timestamp("2024-01-01"))
    hourly = synthetic_bars(n=300, seed=1, timeframe="1h")
    rows = fr.feature_rows(hourly, compute_features(hourly))
    assert (rows["event_timestamp"] - rows["bar_open_time"] == pd.Timedelta(hours=1)).all()
    assert rows["created"].nunique() == 1


# ---- profiles and settings --------------------------------------------------------------------------


def test_store_profiles_and_settings(
    tmp_repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "d"
    redis = fr.store("redis", repo=tmp_repo, data=data, redis="redis://:s3cret@cache:6380/2")
    assert redis.config.online_store.type == "redis"
    assert redis.config.online_store.connection_string == "cache:6380,db=2,password=s3cret"
    assert redis.config.registry.path == f"sqlite:///{data.resolve()}/registry.db"
    assert redis.config.offline_store.type == "file"
    assert redis.config.entity_key_serialization_version == 3
    assert data.is_dir()

    monkeypatch.setenv(fr.DATA_ENV, str(tmp_path / "from_env"))
    monkeypatch.setenv(fr.REDIS_ENV, "redis-host:7000")
    assert fr.store("redis", repo=tmp_repo).config.online_store.connection_string == (
        "redis-host:7000"
    )
    sqlite = fr.store("sqlite", repo=tmp_repo)
    assert sqlite.config.online_store.type == "sqlite"
    assert sqlite.config.online_store.path == str(tmp_path / "from_env" / "online.db")
    assert fr.store_data_dir(sqlite) == tmp_path / "from_env"
    # a yaml path works like a profile name
    by_path = fr.store(tmp_repo / "feature_store.sqlite.yaml", repo=tmp_repo, data=data)
    assert by_path.config.online_store.path == str(data.resolve() / "online.db")

    monkeypatch.delenv(fr.REDIS_ENV)
    assert fr.redis_connection() == "localhost:6379"
    assert fr.redis_connection("rediss://u:p@h/0") == "h:6379,db=0,username=u,password=p,ssl=true"
    with pytest.raises(ConfigError, match="unknown Feast profile"):
        fr.store("postgres", repo=tmp_repo)

    # the same expansion Feast applies to feature_store.yaml (os.path.expandvars)
    monkeypatch.setenv("RT_X", "1")
    text = "a: ${RT_X} $RT_X ${RT_UNSET_VAR} $RT_UNSET_VAR"
    assert fr.expand_vars(text, os.environ) == os.path.expandvars(text)


# ---- apply ------------------------------------------------------------------------------------------


def test_feast_cli_apply_and_module_wrapper(tmp_path: Path, tmp_repo: Path) -> None:
    """`feast -c <repo> -f <sqlite yaml> apply` and `python -m raytrader.features.feast_repo`."""
    feast_bin = Path(sys.executable).with_name("feast")
    cli_data, wrapper_data = tmp_path / "cli", tmp_path / "wrapper"
    cli_data.mkdir()
    cli = subprocess.Popen(
        [str(feast_bin), "-c", str(tmp_repo), "-f", "feature_store.sqlite.yaml", "apply"],
        env=fr.feast_env(data=cli_data),
        cwd=tmp_repo,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    env = fr.feast_env(data=wrapper_data) | {fr.REPO_ENV: str(tmp_repo)}
    wrapper = subprocess.Popen(
        [sys.executable, "-m", "raytrader.features.feast_repo", "--profile", "sqlite", "apply"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    for proc in (cli, wrapper):
        out, _ = proc.communicate(timeout=120)
        assert proc.returncode == 0, out
        assert "Created feature view bar_features_v1" in out
        assert "Created feature service ensemble_v1" in out
    for data in (cli_data, wrapper_data):
        fs = fr.store("sqlite", repo=tmp_repo, data=data)
        view = fs.get_feature_view("bar_features_v1")
        assert [f.name for f in view.features] == SERVED
        assert view.batch_source.path == str(data.resolve() / "bar_features_v1")
        assert fs.get_feature_service("ensemble_v1").name == "ensemble_v1"
        assert (data / "online.db").is_file()


def test_python_apply_registers_the_generated_schema(goog_store) -> None:
    view = goog_store.get_feature_view("bar_features_v1")
    assert [f.name for f in view.features] == SERVED
    assert view.ttl == pd.Timedelta(days=7)
    assert view.stream_source.name == "bar_features_v1_push"
    service = goog_store.get_feature_service("ensemble_v1")
    assert [p.name for p in service.feature_view_projections] == ["bar_features_v1"]
    assert goog_store.get_entity("symbol").join_key == "symbol"
    assert goog_store.get_entity("timeframe").join_key == "timeframe"


# ---- online -----------------------------------------------------------------------------------------


def test_materialized_online_features_are_the_last_bar_exactly(
    goog_store, goog: Bars, goog_rows: pd.DataFrame
) -> None:
    online = fr.online_features(goog_store, ["GOOG", "NOT_STORED"], "1d")
    last = goog_rows.iloc[[-1]]
    got = online.loc[["GOOG"]]
    assert not np.isnan(served_values(last)).any()
    np.testing.assert_array_equal(served_values(got), served_values(last))  # float equality
    assert bool(got[WARM_COLUMN].iloc[0]) is True
    assert got[fr.BAR_OPEN_TIME].iloc[0] == goog.index[-1]
    assert got["event_timestamp"].iloc[0] == goog.index[-1] + pd.Timedelta(days=1)
    missing = online.loc["NOT_STORED"]
    assert missing[list(BAR_FEATURES_V1.names)].isna().all()
    assert pd.isna(missing["event_timestamp"])

    # the raw Feast call through the feature service agrees
    raw = goog_store.get_online_features(
        features=goog_store.get_feature_service("ensemble_v1"),
        entity_rows=[{"symbol": "GOOG", "timeframe": "1d"}],
    ).to_dict()
    assert [raw[n][0] for n in BAR_FEATURES_V1.names] == list(served_values(last)[0])
    # the same symbol at another timeframe is another row: nothing is stored for it
    assert (
        fr.online_features(goog_store, ["GOOG"], "1h")[list(BAR_FEATURES_V1.names)]
        .isna()
        .all(axis=None)
    )


def test_push_updates_online_and_offline(
    tmp_repo: Path, tmp_path: Path, goog_rows: pd.DataFrame
) -> None:
    fs = fr.store("sqlite", repo=tmp_repo, data=tmp_path)
    fr.apply(fs, repo=tmp_repo)
    last = goog_rows.iloc[[-1]].reset_index(drop=True)
    fr.push(fs, last, to="online")
    np.testing.assert_array_equal(
        served_values(fr.online_features(fs, ["GOOG"], "1d")), served_values(last)
    )
    assert fr.read_offline("GOOG", tmp_path).empty  # online only

    # the next bar arrives on the live path: online and offline
    nxt = last.copy()
    step = pd.Timedelta(days=1)
    for col in ("event_timestamp", "bar_open_time"):
        nxt[col] = nxt[col] + step
    nxt["created"] = CREATED_AT + step
    nxt[list(BAR_FEATURES_V1.names)] = served_values(last) * 1.5 + 1.0
    from feast.data_source import PushMode

    fr.push(fs, nxt, to=PushMode.ONLINE_AND_OFFLINE)
    online = fr.online_features(fs, ["GOOG"], "1d")
    np.testing.assert_array_equal(served_values(online), served_values(nxt))
    assert online[fr.BAR_OPEN_TIME].iloc[0] == nxt[fr.BAR_OPEN_TIME].iloc[0]
    pd.testing.assert_frame_equal(fr.read_offline("GOOG", tmp_path), nxt)

    fr.push(fs, last, to="offline")
    assert len(fr.read_offline("GOOG", tmp_path)) == 2
    with pytest.raises(ConfigError, match="unknown mode"):
        fr.push(fs, last, to="sideways")


def test_online_records_equal_feasts_own_conversion(goog_store, goog_rows: pd.DataFrame) -> None:
    """push() hands records straight to the online store; they must be the ones Feast's push
    builds (NaN -> null, warm, bar_open_time as a Unix timestamp, naive UTC datetimes)."""
    import pyarrow as pa
    from feast.utils import _convert_arrow_to_proto  # Feast's own conversion, to pin parity

    rows = goog_rows.iloc[[0, 1, 30, 59, 60, 61, len(goog_rows) - 1]].reset_index(drop=True)
    assert rows[list(BAR_FEATURES_V1.names)].isna().to_numpy().any()  # warm-up NaNs included
    assert set(rows[WARM_COLUMN]) == {True, False}
    view = goog_store.get_feature_view(fr.FEATURE_VIEW)
    keys = {e.name: e.dtype.to_value_type() for e in view.entity_columns}
    theirs = _convert_arrow_to_proto(pa.Table.from_pandas(rows), view, keys)
    assert fr.online_records(rows) == theirs


def test_latest_rows_is_the_last_row_of_each_symbol(goog: Bars, goog_rows: pd.DataFrame) -> None:
    feats = compute_features(goog)
    head = goog.head(300)
    got = fr.latest_rows([(goog, feats), (head, feats.iloc[:300])], created=CREATED_AT)
    want = pd.concat([goog_rows.iloc[[-1]], goog_rows.iloc[[299]]], ignore_index=True)
    pd.testing.assert_frame_equal(got, want)


# ---- historical (point-in-time) ---------------------------------------------------------------------


def expected_point_in_time(rows: pd.DataFrame, entity: pd.DataFrame) -> pd.DataFrame:
    """Latest row with event_timestamp (bar close) <= the entity time, within the 7-day TTL."""
    left = entity.assign(_i=np.arange(len(entity))).sort_values("event_timestamp")
    right = rows.drop(columns=["symbol", "timeframe", "created"]).rename(
        columns={"event_timestamp": "_close"}
    )
    merged = pd.merge_asof(
        left,
        right,
        left_on="event_timestamp",
        right_on="_close",
        direction="backward",
        allow_exact_matches=True,
        tolerance=pd.Timedelta(days=7),
    )
    return merged.sort_values("_i").reset_index(drop=True)


def test_training_frame_has_no_lookahead(goog_store, goog: Bars, goog_rows: pd.DataFrame) -> None:
    opens = goog.index
    day = pd.Timedelta(days=1)
    i = len(goog) - 10  # a bar well past warm-up
    inside = opens[i] + pd.Timedelta(hours=15, minutes=59)  # during bar i: it has not closed yet
    at_close = opens[i] + day  # bar i closes exactly now
    at_open = opens[i]  # bar i opens now, i.e. bar i-1 has just closed
    rng = np.random.default_rng(7)
    span = (opens[-1] - opens[0] + 4 * day).value
    seconds = rng.integers(0, span // 10**9, 300)
    random_times = opens[0] - 2 * day + pd.to_timedelta(seconds, unit="s")
    exact_closes = opens[rng.choice(len(opens), 50, replace=False)] + day
    # duplicate entity keys on purpose (at_close twice): every entity row must come back
    times = pd.DatetimeIndex(
        [inside, at_close, at_open, opens[0], at_close, *random_times, *exact_closes]
    )
    entity = pd.DataFrame(
        {
            "symbol": "GOOG",
            "timeframe": "1d",
            "event_timestamp": times,
            "label": np.arange(len(times)),
        }
    )

    got = fr.training_frame(goog_store, entity)

    assert len(got) == len(entity)
    assert (got["label"].to_numpy() == entity["label"].to_numpy()).all()  # entity order kept
    open_time = got[fr.BAR_OPEN_TIME]
    assert open_time.iloc[0] == opens[i - 1]  # inside bar i -> the previous bar's features
    assert open_time.iloc[1] == opens[i]  # exactly at bar i's close -> bar i
    assert open_time.iloc[2] == opens[i - 1]
    assert pd.isna(open_time.iloc[3])  # nothing has closed at the first open
    np.testing.assert_array_equal(
        served_values(got.iloc[[0, 1]]), served_values(goog_rows.iloc[[i - 1, i]])
    )

    # every row: the feature row is the latest one whose close <= the entity time
    known = open_time.notna().to_numpy()
    closes = open_time[known] + day
    assert (closes.to_numpy() <= got["event_timestamp"][known].to_numpy()).all()
    want = expected_point_in_time(goog_rows, entity)
    assert open_time.iloc[4] == opens[i]
    pd.testing.assert_series_equal(open_time, want[fr.BAR_OPEN_TIME], check_names=False)
    np.testing.assert_array_equal(served_values(got), served_values(want))
    assert got[WARM_COLUMN].dtype == "boolean"
    np.testing.assert_array_equal(
        got[WARM_COLUMN].to_numpy(dtype=object, na_value=None),
        want[WARM_COLUMN].astype("boolean").to_numpy(dtype=object, na_value=None),
    )


def test_training_frame_refuses_naive_times(goog_store) -> None:
    entity = pd.DataFrame(
        {"symbol": ["GOOG"], "timeframe": ["1d"], "event_timestamp": [pd.Timestamp("2010-01-01")]}
    )
    with pytest.raises(ConfigError, match="timezone-aware"):
        fr.training_frame(goog_store, entity)
    aware = entity.assign(event_timestamp=entity["event_timestamp"].dt.tz_localize("UTC"))
    with pytest.raises(ConfigError, match="already has feature"):
        fr.training_frame(goog_store, aware.assign(rsi_14=1.0))


# ---- offline writer ---------------------------------------------------------------------------------


def test_append_offline_is_idempotent_and_replaces_keys(
    tmp_path: Path, goog_rows: pd.DataFrame
) -> None:
    rows = goog_rows.iloc[-200:].reset_index(drop=True)
    (path,) = fr.append_offline(rows, tmp_path)
    assert path == tmp_path / "bar_features_v1" / "GOOG.1d.parquet"
    fr.append_offline(rows, tmp_path)
    fr.append_offline(rows.iloc[::-1], tmp_path)  # order does not matter
    pd.testing.assert_frame_equal(fr.read_offline("GOOG", tmp_path), rows)

    changed = rows.iloc[[50]].copy()
    changed["rsi_14"] = -1.0
    changed["created"] = CREATED_AT + pd.Timedelta(hours=1)
    fr.append_offline(changed, tmp_path)
    stored = fr.read_offline("GOOG", tmp_path)
    assert len(stored) == len(rows)
    assert not stored.duplicated(["symbol", "timeframe", "event_timestamp"]).any()
    assert stored["event_timestamp"].is_monotonic_increasing
    expected = rows.copy()
    expected.loc[50, ["rsi_14", "created"]] = [-1.0, CREATED_AT + pd.Timedelta(hours=1)]
    pd.testing.assert_frame_equal(stored, expected)

    assert fr.offline_file(".X", "1h", tmp_path).name == "%2EX.1h.parquet"  # never hidden
    # within one batch the last row of a key wins; other symbols get their own (encoded) file
    other = rows.iloc[:3].assign(symbol="BTC/USDT")
    dup = other.iloc[[1]].assign(rsi_14=123.0)
    files = fr.append_offline(pd.concat([other, dup]), tmp_path)
    assert [f.name for f in files] == ["BTC%2FUSDT.1d.parquet"]
    btc = fr.read_offline("BTC/USDT", tmp_path)
    assert len(btc) == 3
    assert btc["rsi_14"].iloc[1] == 123.0
    assert len(fr.read_offline(data=tmp_path)) == len(rows) + 3
    # only the data files and hidden lock files: no temporary file is left behind
    visible = sorted(p.name for p in (tmp_path / "bar_features_v1").iterdir())
    assert [n for n in visible if not n.startswith(".")] == [
        "BTC%2FUSDT.1d.parquet",
        "GOOG.1d.parquet",
    ]
    assert not [n for n in visible if n.endswith(".tmp")]


def test_append_offline_refuses_bad_rows(tmp_path: Path, goog_rows: pd.DataFrame) -> None:
    rows = goog_rows.iloc[-5:]
    with pytest.raises(ConfigError, match="missing"):
        fr.append_offline(rows.drop(columns=["warm"]), tmp_path)
    naive = rows.assign(event_timestamp=rows["event_timestamp"].dt.tz_localize(None))
    with pytest.raises(ConfigError, match="timezone-aware"):
        fr.append_offline(naive, tmp_path)
    assert not (tmp_path / "bar_features_v1" / "GOOG.1d.parquet").exists()
    with pytest.raises(ConfigError, match="keyed by timeframe"):
        fr.append_offline(rows.drop(columns=["timeframe"]), tmp_path)


# ---- timeframe identity -----------------------------------------------------------------------------


def test_two_timeframes_of_one_symbol_are_separate_rows_offline_and_online(
    tmp_repo: Path, tmp_path: Path, goog: Bars
) -> None:
    from raytrader.data.resample import resample

    weekly = resample(goog, "1w")
    daily_rows = fr.feature_rows(goog, compute_features(goog), created=CREATED_AT)
    weekly_rows = fr.feature_rows(weekly, compute_features(weekly), created=CREATED_AT)
    fs = fr.store("sqlite", repo=tmp_repo, data=tmp_path)
    fr.apply(fs, repo=tmp_repo)
    for rows in (daily_rows, weekly_rows):
        fr.push(fs, rows, to="offline")
        fr.push(fs, rows.tail(1), to="online")
    pd.testing.assert_frame_equal(fr.read_offline("GOOG", tmp_path, timeframe="1d"), daily_rows)
    pd.testing.assert_frame_equal(fr.read_offline("GOOG", tmp_path, timeframe="1w"), weekly_rows)
    assert len(fr.read_offline("GOOG", tmp_path)) == len(daily_rows) + len(weekly_rows)
    for tf, rows in (("1d", daily_rows), ("1w", weekly_rows)):
        online = fr.online_features(fs, ["GOOG"], tf)
        np.testing.assert_array_equal(served_values(online), served_values(rows.tail(1)))
        assert online[fr.BAR_OPEN_TIME].iloc[0] == rows[fr.BAR_OPEN_TIME].iloc[-1]
        pd.testing.assert_frame_equal(fr.online_rows(fs, ["GOOG"], tf), online, check_like=True)


def test_compaction_drops_only_consumer_parts_never_batch_rows(
    tmp_path: Path, goog_rows: pd.DataFrame
) -> None:
    """The consumer reconciles after a crash by dropping the rows its own parts hold past its
    last persisted bar; rows the batch path wrote (a backfill) stay, whatever their time."""
    backfill = goog_rows.iloc[:1000].reset_index(drop=True)
    fr.append_offline(backfill, tmp_path)
    streamed = goog_rows.iloc[1000:1100].reset_index(drop=True)
    fr.append_offline_part(streamed, tmp_path)
    cutoff = streamed[fr.BAR_OPEN_TIME].iloc[49]
    fr.compact_offline("GOOG", "1d", tmp_path, drop_parts_after=cutoff)
    stored = fr.read_offline("GOOG", tmp_path, timeframe="1d")
    want = pd.concat([backfill, streamed.iloc[:50]], ignore_index=True)
    pd.testing.assert_frame_equal(stored, want)
    # a consumer that never saw the symbol drops nothing, even rows after the batch's last one
    fr.append_offline_part(streamed.iloc[50:], tmp_path)
    fr.compact_offline("GOOG", "1d", tmp_path)
    pd.testing.assert_frame_equal(
        fr.read_offline("GOOG", tmp_path, timeframe="1d"),
        goog_rows.iloc[:1100].reset_index(drop=True),
    )
