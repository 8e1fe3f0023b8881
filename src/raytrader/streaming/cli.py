"""``raytrader stream …``: replay bars into Kafka, poll an exchange, run the feature consumer."""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from raytrader.settings import KafkaSettings

stream_app = typer.Typer(
    help="Kafka bar streams and the streaming feature consumer.", no_args_is_help=True
)


def _kafka(bootstrap: str | None) -> KafkaSettings:
    """Kafka's servers (``--bootstrap``, else the settings') and client security
    (:func:`raytrader.wiring.kafka`)."""
    from raytrader import wiring

    return wiring.kafka(bootstrap)


def _connected(bootstrap: str | None, wait_s: float) -> KafkaSettings:
    """:func:`_kafka`, once a broker answers (within ``wait_s``): a stopped or misaddressed Kafka
    is an error naming it, not a client that retries silently forever."""
    from raytrader.kafka_admin import wait_reachable

    kafka = _kafka(bootstrap)
    wait_reachable(
        kafka.servers, wait_s=wait_s, security=kafka.security_config(),
        progress=lambda msg: typer.echo(msg, err=True),
    )  # fmt: skip
    return kafka


WaitOpt = Annotated[
    float,
    typer.Option(
        "--wait",
        min=0.0,
        help="seconds to wait for Kafka to answer before giving up (a pod started beside its "
        "broker: longer)",
    ),
]

BootstrapOpt = Annotated[
    str | None,
    typer.Option(
        help="Kafka bootstrap servers (default: $RAYTRADER_KAFKA_BOOTSTRAP, else the local "
        "stack's; security from $RAYTRADER_KAFKA_*)"
    ),
]


def dataset_names(data: str) -> list[str]:
    """``--data``'s comma-separated datasets; the commas of a spec's own ``key=value`` parameters
    (``synthetic:n_bars=3000,timeframe=1d``) stay in that spec."""
    names: list[str] = []
    for part in (p.strip() for p in data.split(",")):
        if not part:
            continue
        if names and "=" in part and ":" not in part:
            names[-1] += f",{part}"
        else:
            names.append(part)
    return names


@stream_app.command("replay")
def replay_cmd(
    data: Annotated[
        str, typer.Option("--data", "-d", help="comma-separated datasets or files")
    ] = "goog",
    speed: Annotated[
        str, typer.Option(help="max | <k>x (market time k-fold faster) | <n>/s")
    ] = "max",
    symbols: Annotated[
        str | None,
        typer.Option(help="synthetic data: one seeded series per symbol, e.g. AAA,BBB"),
    ] = None,
    limit: Annotated[
        int | None, typer.Option(help="send at most this many bars per symbol")
    ] = None,
    calendar: Annotated[
        str,
        typer.Option(
            help="market calendar the messages carry: auto (a data set's own, inferred for a "
            "file) | equity | fx | crypto"
        ),
    ] = "auto",
    start: Annotated[
        str | None, typer.Option(help="first bar to send, ISO-8601 (inclusive; naive = UTC)")
    ] = None,
    end: Annotated[
        str | None, typer.Option(help="send bars before this time, ISO-8601 (exclusive)")
    ] = None,
    bootstrap: BootstrapOpt = None,
    wait: WaitOpt = 15.0,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Replay bundled, synthetic or file bars into ``bars.<timeframe>`` keyed by symbol."""
    from raytrader.data.sources import load_bars
    from raytrader.errors import ConfigError
    from raytrader.streaming.producer import BarProducer, bar_messages, interleave, parse_speed

    sets = []
    for name in dataset_names(data):
        if symbols and name.startswith("synthetic"):
            base = name if ":" in name else name + ":"
            for i, sym in enumerate(s.strip() for s in symbols.split(",") if s.strip()):
                sep = "," if not base.endswith(":") else ""
                spec = f"{base}{sep}symbol={sym},seed={1000 + i}"
                sets.append(load_bars(spec, calendar=calendar, start=start, end=end))
        else:
            sets.append(load_bars(name, calendar=calendar, start=start, end=end))
    if limit is not None:
        sets = [b.head(limit) for b in sets]
    tfs = {b.timeframe.name for b in sets}
    if len(tfs) != 1:
        raise ConfigError(f"replay one timeframe at a time; got {sorted(tfs)}")
    interval = parse_speed(speed, sets[0].timeframe.seconds)
    kafka = _connected(bootstrap, wait)
    producer = BarProducer(kafka.servers, extra=kafka.security_config())
    stream = interleave([bar_messages(b, b.source or b.symbol) for b in sets])
    n = producer.replay(stream, interval_s=interval)
    summary = {"sent": n, "symbols": [b.symbol for b in sets], "topic": f"bars.{tfs.pop()}"}
    typer.echo(
        json.dumps(summary)
        if json_out
        else f"sent {n} bars of {summary['symbols']} to {summary['topic']}"
    )


@stream_app.command("live")
def live_cmd(
    exchange: Annotated[str, typer.Option(help="ccxt exchange id")] = "binance",
    symbol: Annotated[str, typer.Option(help="market symbol, e.g. BTC/USDT")] = "BTC/USDT",
    timeframe: Annotated[str, typer.Option(help="candle timeframe")] = "1m",
    since_minutes: Annotated[int, typer.Option(help="start this many minutes back")] = 60,
    max_polls: Annotated[int | None, typer.Option(help="stop after this many polls")] = None,
    api_url: Annotated[str | None, typer.Option(help="exchange API base URL override")] = None,
    market_type: Annotated[
        list[str] | None,
        typer.Option(help="market types ccxt loads, e.g. spot (repeatable; default: all)"),
    ] = None,
    bootstrap: BootstrapOpt = None,
    wait: WaitOpt = 15.0,
) -> None:
    """Poll an exchange (ccxt) for closed candles and produce them to ``bars.<timeframe>``."""
    from datetime import UTC, datetime, timedelta

    from raytrader.data.ccxt_source import CcxtConfig, poll_closed_candles
    from raytrader.streaming.producer import BarProducer, bar_messages

    cfg = CcxtConfig(
        exchange=exchange,
        symbol=symbol,
        timeframe=timeframe,
        since=datetime.now(UTC) - timedelta(minutes=since_minutes),
        api_urls_override=api_url,
        market_types=tuple(market_type) if market_type else None,
    )
    kafka = _connected(bootstrap, wait)
    producer = BarProducer(kafka.servers, extra=kafka.security_config())
    sent = 0
    for bars in poll_closed_candles(cfg, max_polls=max_polls):
        for msg in bar_messages(bars, f"ccxt:{exchange}"):
            producer.send(msg)
            sent += 1
        producer.flush()
        typer.echo(f"sent {sent} closed {timeframe} candles of {symbol}")


@stream_app.command("features")
def features_cmd(
    timeframe: Annotated[str, typer.Option(help="which bars.<timeframe> topic to consume")] = "1m",
    group: Annotated[str, typer.Option(help="consumer group id")] = "raytrader-features",
    state_dir: Annotated[
        Path | None, typer.Option(help="bar history state (default: under the local stack's dir)")
    ] = None,
    metrics_port: Annotated[
        int | None, typer.Option(help="serve Prometheus /metrics on this port")
    ] = 9401,
    metrics_host: Annotated[
        str, typer.Option(help="address /metrics binds (0.0.0.0 in a pod Prometheus scrapes)")
    ] = "127.0.0.1",
    idle_exit: Annotated[
        float | None, typer.Option(help="exit after this many idle seconds")
    ] = None,
    calendar: Annotated[
        str,
        typer.Option(
            help="market calendar of the symbols: auto (each message's, crypto if it has none) "
            "| equity | fx | crypto; feature values do not depend on it"
        ),
    ] = "auto",
    instance_id: Annotated[
        str | None, typer.Option(help="static group membership id (fast takeover after a restart)")
    ] = None,
    redis: Annotated[
        str | None,
        typer.Option(
            help="Feast online store (default: $RAYTRADER_REDIS_CONNECTION or the stack's)"
        ),
    ] = None,
    bootstrap: BootstrapOpt = None,
    wait: WaitOpt = 15.0,
) -> None:
    """Consume bars, compute bar_features_v1 incrementally, write them to Feast (online + offline)."""
    # SIGTERM (systemd, a Kubernetes rollout) stops the consumer like Ctrl-C: until it runs, by
    # interrupting the start-up; then by ending the loop, after which it flushes, commits its
    # offsets and leaves its group instead of being killed mid-batch
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    from raytrader import settings
    from raytrader.streaming.consumer import ConsumerConfig, FeatureConsumer
    from raytrader.streaming.sinks import default_sink

    if state_dir is None:
        state_dir = settings.state_dir() / "stream"
    kafka = _connected(bootstrap, wait)
    cfg = ConsumerConfig(
        bootstrap=kafka.servers,
        timeframe=timeframe,
        group_id=group,
        state_dir=str(state_dir),
        metrics_port=metrics_port or None,
        metrics_host=metrics_host,
        calendar=calendar,
        instance_id=instance_id,
    )
    sink = default_sink(redis)  # unset: RAYTRADER_REDIS_CONNECTION and _FEAST_DATA (settings)
    consumer = FeatureConsumer(cfg, sink, security=kafka.security_config())
    signal.signal(signal.SIGTERM, lambda *_: consumer.stop())
    try:
        n = consumer.run(idle_timeout_s=idle_exit)
    except KeyboardInterrupt:
        n = -1
    finally:
        consumer.close()
    typer.echo(f"consumed {n} messages" if n >= 0 else "stopped")


@stream_app.command("topics")
def topics_cmd(
    topic: Annotated[
        list[str] | None,
        typer.Option(help="NAME=PARTITIONS (repeatable); default: the stack's bars.* topics"),
    ] = None,
    replication: Annotated[int, typer.Option(min=1, help="replication factor of new topics")] = 1,
    wait: Annotated[
        float, typer.Option(min=0.0, help="wait this many seconds for enough brokers first")
    ] = 0.0,
    bootstrap: BootstrapOpt = None,
) -> None:
    """Create the bar topics that are missing and raise partition counts that are too low."""
    from raytrader.errors import ConfigError
    from raytrader.kafka_admin import DEFAULT_TOPICS, create_topics

    wanted = dict(DEFAULT_TOPICS)
    if topic:
        wanted = {}
        for item in topic:
            name, sep, n = item.partition("=")
            if not sep or not name or not n.isdigit() or int(n) < 1:
                raise ConfigError(f"--topic {item!r}: expected NAME=PARTITIONS, e.g. bars.1m=4")
            wanted[name] = int(n)
    kafka = _kafka(bootstrap)
    result = create_topics(
        kafka.servers,
        wanted,
        security=kafka.security_config(),
        replication=replication,
        wait_s=wait,
        progress=lambda msg: typer.echo(msg, err=True),
    )
    for name, outcome in result.items():
        typer.echo(f"{name}: {outcome} ({wanted[name]} partitions)")


if __name__ == "__main__":
    stream_app()
