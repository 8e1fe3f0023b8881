"""A real HTTP server on 127.0.0.1 that answers like Binance's and Yahoo's public APIs.

Tests point the real ccxt / yfinance libraries at it (through the connectors' documented override
options), so the full client stack runs: URL building, HTTP, JSON parsing, error mapping. Nothing in
the libraries is mocked or patched.

* :class:`ReplayServer` is a ``ThreadingHTTPServer`` on an ephemeral loopback port, used as a
  context manager. It records every request (method, path, query, ``Host`` and
  ``X-Forwarded-Host`` headers, arrival time), can be told to fail the next N requests with a status
  (:meth:`ReplayServer.fail_next`), and answers unknown paths with 404.
* :func:`install_binance` serves ``/api/v3/exchangeInfo`` from the recorded fixture and
  ``/api/v3/klines`` *honestly* from a list of candles in Binance's 12-field row format, filtered
  by ``symbol``/``interval``, ``startTime``/``endTime`` and ``limit`` (default 500, max 1000)
  exactly as the real endpoint documents.
* :func:`install_yahoo` serves the cookie / crumb handshake (``fc.yahoo.com``,
  ``/v1/test/getcrumb``) and ``/v8/finance/chart/<ticker>`` from recorded chart responses, keeping
  only the bars inside ``period1 <= t < period2`` (or the last bar for ``range=1d``), like Yahoo.

Recorded fixtures live under ``tests/fixtures/recorded/<name>/`` (see ``make_fixtures.py`` there).
"""

from __future__ import annotations

import copy
import json
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

RECORDED = Path(__file__).resolve().parents[1] / "fixtures" / "recorded"


def load_recorded(name: str, filename: str) -> Any:
    """Parse ``tests/fixtures/recorded/<name>/<filename>`` (a recorded JSON response)."""
    return json.loads((RECORDED / name / filename).read_text(encoding="utf-8"))


@dataclass(frozen=True)
class RecordedRequest:
    """One request the server received."""

    method: str
    path: str
    query: dict[str, str]
    host: str
    forwarded_host: str | None
    client_ip: str
    at: float  # time.monotonic() on arrival


@dataclass(frozen=True)
class Reply:
    status: int = 200
    body: bytes = b""
    content_type: str = "application/json"
    headers: tuple[tuple[str, str], ...] = ()

    @classmethod
    def json(cls, payload: Any, status: int = 200) -> Reply:
        return cls(status=status, body=json.dumps(payload).encode())

    @classmethod
    def text(cls, text: str, status: int = 200) -> Reply:
        return cls(status=status, body=text.encode(), content_type="text/plain;charset=utf-8")


Handler = Callable[[RecordedRequest], Reply]


@dataclass
class _Failure:
    remaining: int
    status: int
    body: bytes
    path_prefix: str | None


@dataclass
class _State:
    routes: list[tuple[str, bool, Handler]] = field(default_factory=list)
    requests: list[RecordedRequest] = field(default_factory=list)
    failures: list[_Failure] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


class ReplayServer:
    """Threaded loopback HTTP server answering from routes; a context manager.

    ``with ReplayServer() as server: ... server.base_url`` → ``http://127.0.0.1:<port>``.
    """

    def __init__(self) -> None:
        self._state = _State()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- routing -------------------------------------------------------------------------------
    def route(self, path: str, handler: Handler, *, prefix: bool = False) -> None:
        """Answer ``path`` (or every path starting with it when ``prefix``) with ``handler``."""
        with self._state.lock:
            self._state.routes.append((path, prefix, handler))

    def route_json(self, path: str, payload: Any, status: int = 200) -> None:
        """Answer ``path`` with a fixed JSON body."""
        reply = Reply.json(payload, status)
        self.route(path, lambda _req: reply)

    def fail_next(
        self,
        n: int,
        status: int = 503,
        *,
        body: Any = None,
        path_prefix: str | None = None,
    ) -> None:
        """Answer the next ``n`` requests (matching ``path_prefix``, if given) with ``status``."""
        raw = json.dumps(body if body is not None else {"error": f"injected {status}"}).encode()
        with self._state.lock:
            self._state.failures.append(_Failure(n, status, raw, path_prefix))

    # -- introspection -------------------------------------------------------------------------
    @property
    def requests(self) -> list[RecordedRequest]:
        with self._state.lock:
            return list(self._state.requests)

    def requests_to(self, path_prefix: str) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path.startswith(path_prefix)]

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("server not started")
        return int(self._httpd.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # -- lifecycle -----------------------------------------------------------------------------
    def __enter__(self) -> ReplayServer:
        state = self._state

        class _Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"  # one request per connection: simple and honest

            def do_GET(self) -> None:
                self._serve("GET")

            def do_POST(self) -> None:
                self._serve("POST")

            def log_message(self, format: str, *args: Any) -> None:  # silence stderr
                pass

            def _serve(self, method: str) -> None:
                parts = urlsplit(self.path)
                req = RecordedRequest(
                    method=method,
                    path=parts.path,
                    query=dict(parse_qsl(parts.query, keep_blank_values=True)),
                    host=self.headers.get("Host", ""),
                    forwarded_host=self.headers.get("X-Forwarded-Host"),
                    client_ip=self.client_address[0],
                    at=time.monotonic(),
                )
                reply = _dispatch(state, req)
                self.send_response(reply.status)
                self.send_header("Content-Type", reply.content_type)
                self.send_header("Content-Length", str(len(reply.body)))
                for k, v in reply.headers:
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(reply.body)

        httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        httpd.daemon_threads = True
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever,
            kwargs={"poll_interval": 0.01},  # so that shutdown() returns at once
            name="replay-server",
            daemon=True,
        )
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)


def _dispatch(state: _State, req: RecordedRequest) -> Reply:
    with state.lock:
        state.requests.append(req)
        for failure in state.failures:
            if failure.remaining > 0 and (
                failure.path_prefix is None or req.path.startswith(failure.path_prefix)
            ):
                failure.remaining -= 1
                return Reply(status=failure.status, body=failure.body)
        handler = None
        for path, prefix, h in reversed(state.routes):  # later routes win
            if req.path == path or (prefix and req.path.startswith(path)):
                handler = h
                break
    if handler is None:
        return Reply.json({"error": f"no recorded response for {req.method} {req.path}"}, 404)
    try:
        return handler(req)
    except Exception as exc:  # a broken handler must show up as a failing request, not a hang
        return Reply.json({"error": f"replay handler failed: {exc!r}"}, 500)


# ----------------------------------------------------------------------------------------------
# Binance spot
# ----------------------------------------------------------------------------------------------

BINANCE_MAX_LIMIT = 1000
BINANCE_DEFAULT_LIMIT = 500


def binance_klines_fixture() -> list[list[Any]]:
    """The recorded BTCUSDT 1h klines (300 rows, 2024-01-01T00:00Z onwards)."""
    rows: list[list[Any]] = load_recorded("binance", "klines_BTCUSDT_1h.json")
    return rows


def shift_klines(rows: Sequence[Sequence[Any]], first_open_ms: int) -> list[list[Any]]:
    """The same candles re-stamped so the first opens at ``first_open_ms`` (spacing kept)."""
    offset = first_open_ms - int(rows[0][0])
    return [[int(r[0]) + offset, *r[1:6], int(r[6]) + offset, *r[7:]] for r in rows]


def _binance_error(code: int, msg: str, status: int = 400) -> Reply:
    return Reply.json({"code": code, "msg": msg}, status)


def install_binance(
    server: ReplayServer,
    *,
    klines: dict[tuple[str, str], Sequence[Sequence[Any]]] | None = None,
    now_ms: Callable[[], int] | None = None,
    overlap: int = 0,
) -> None:
    """Serve Binance spot ``exchangeInfo`` and paginated ``klines``.

    ``klines`` maps ``(symbol id, interval)`` to rows in Binance's wire format; the default is the
    recorded ``("BTCUSDT", "1h")`` fixture. With ``now_ms`` (a clock in epoch ms), rows opening
    after "now" do not exist yet, as on a live exchange; the row that opened last is the one still
    forming. ``overlap=k`` imitates exchanges that round ``since`` down: each page also starts with
    the ``k`` rows before ``startTime``.
    """
    info = load_recorded("binance", "exchangeInfo.json")
    known_symbols = {s["symbol"] for s in info["symbols"]}
    series = {
        key: sorted((list(r) for r in rows), key=lambda r: int(r[0]))
        for key, rows in (klines or {("BTCUSDT", "1h"): binance_klines_fixture()}).items()
    }

    def exchange_info(_req: RecordedRequest) -> Reply:
        payload = copy.deepcopy(info)
        payload["serverTime"] = int(time.time() * 1000)
        return Reply.json(payload)

    def klines_handler(req: RecordedRequest) -> Reply:
        q = req.query
        symbol = q.get("symbol")
        interval = q.get("interval")
        if not symbol:
            return _binance_error(-1102, "Mandatory parameter 'symbol' was not sent.")
        if symbol not in known_symbols:
            return _binance_error(-1121, "Invalid symbol.")
        if not interval:
            return _binance_error(-1102, "Mandatory parameter 'interval' was not sent.")
        try:
            limit = int(q.get("limit", BINANCE_DEFAULT_LIMIT))
            start = int(q["startTime"]) if "startTime" in q else None
            end = int(q["endTime"]) if "endTime" in q else None
        except ValueError:
            return _binance_error(-1100, "Illegal characters found in a parameter.")
        if not 1 <= limit <= BINANCE_MAX_LIMIT:
            return _binance_error(-1130, "Data sent for parameter 'limit' is not valid.")
        rows = series.get((symbol, interval))
        if rows is None:
            return _binance_error(-1120, "Invalid interval.")
        if now_ms is not None:
            now = now_ms()
            rows = [r for r in rows if int(r[0]) <= now]
        selected = [r for r in rows if end is None or int(r[0]) <= end]
        if start is None:  # without a startTime the most recent rows
            return Reply.json(selected[-limit:])
        first = next((i for i, r in enumerate(selected) if int(r[0]) >= start), len(selected))
        first = max(0, first - overlap) if first < len(selected) else first
        return Reply.json(selected[first : first + limit])

    server.route("/api/v3/exchangeInfo", exchange_info)
    server.route("/api/v3/klines", klines_handler)


# ----------------------------------------------------------------------------------------------
# Yahoo Finance
# ----------------------------------------------------------------------------------------------

YAHOO_CRUMB = "replay-crumb"


def yahoo_chart_fixture() -> dict[str, Any]:
    chart: dict[str, Any] = load_recorded("yahoo", "chart_AAPL_1d.json")
    return chart


def _chart_window(chart: dict[str, Any], keep: Callable[[int], bool]) -> dict[str, Any]:
    """``chart`` keeping the bars whose time satisfies ``keep`` (Yahoo's empty shape if none)."""
    out = copy.deepcopy(chart)
    result = out["chart"]["result"][0]
    stamps: list[int] = result.get("timestamp", [])
    idx = [i for i, t in enumerate(stamps) if keep(t)]
    indicators = result["indicators"]
    if not idx:
        # what Yahoo sends for a window without bars: no timestamps, empty quote/adjclose objects
        result.pop("timestamp", None)
        result.pop("events", None)
        indicators["quote"] = [{}]
        if "adjclose" in indicators:
            indicators["adjclose"] = [{}]
        return out
    result["timestamp"] = [stamps[i] for i in idx]
    quote = indicators["quote"][0]
    for k in list(quote):
        quote[k] = [quote[k][i] for i in idx]
    if "adjclose" in indicators:
        adj = indicators["adjclose"][0]["adjclose"]
        indicators["adjclose"][0]["adjclose"] = [adj[i] for i in idx]
    lo, hi = result["timestamp"][0], result["timestamp"][-1]
    for kind, events in list(result.get("events", {}).items()):
        result["events"][kind] = {k: v for k, v in events.items() if lo <= int(v["date"]) <= hi}
    return out


def install_yahoo(
    server: ReplayServer,
    *,
    charts: dict[str, dict[str, Any]] | None = None,
) -> None:
    """Serve Yahoo's cookie/crumb handshake and ``/v8/finance/chart/<ticker>``.

    ``charts`` maps tickers to recorded chart responses; the default is the recorded AAPL daily
    fixture. Unknown tickers get Yahoo's 404 "No data found, symbol may be delisted" body.
    """
    recorded = charts if charts is not None else {"AAPL": yahoo_chart_fixture()}

    def cookie(_req: RecordedRequest) -> Reply:
        # fc.yahoo.com answers 404 (its Set-Cookie is what matters; no cookie is needed here)
        return Reply(status=404, body=b"<html>Not Found</html>", content_type="text/html")

    def crumb(_req: RecordedRequest) -> Reply:
        return Reply.text(YAHOO_CRUMB)

    def chart(req: RecordedRequest) -> Reply:
        ticker = req.path.rsplit("/", 1)[-1]
        if ticker not in recorded:
            return Reply.json(
                {
                    "chart": {
                        "result": None,
                        "error": {
                            "code": "Not Found",
                            "description": "No data found, symbol may be delisted",
                        },
                    }
                },
                404,
            )
        data = recorded[ticker]
        q = req.query
        if "period1" in q or "period2" in q:
            p1 = int(q.get("period1", 0))
            p2 = int(q.get("period2", 2**62))
            return Reply.json(_chart_window(data, lambda t: p1 <= t < p2))
        stamps = data["chart"]["result"][0].get("timestamp", [])
        last = stamps[-1] if stamps else None
        if q.get("range") == "1d":
            return Reply.json(_chart_window(data, lambda t: t == last))
        return Reply.json(data)

    server.route("/", cookie)
    server.route("/v1/test/getcrumb", crumb)
    server.route("/v8/finance/chart/", chart, prefix=True)
