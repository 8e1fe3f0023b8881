"""A requests session bound to one base URL: how connectors are pointed at a local server.

Used by the ccxt and yfinance connectors' documented override options (``api_urls_override``,
``base_url_override``) so that tests talk to a recorded-response server on 127.0.0.1 over real HTTP,
and so that nothing else can be contacted while an override is set.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import requests
from requests.adapters import HTTPAdapter

from raytrader.errors import DataSourceError


def check_base_url(value: str | None, field: str) -> str | None:
    """``None`` or an absolute ``http(s)://host[:port][/path]`` URL (trailing slash removed)."""
    if value is None:
        return None
    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(
            f"{field} must be an http(s) URL such as http://127.0.0.1:8080, got {value!r}"
        )
    if parts.query or parts.fragment:
        raise ValueError(f"{field} must not carry a query or fragment, got {value!r}")
    return urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/"), "", ""))


class _OverrideAdapter(HTTPAdapter):
    """Sends requests only to one base URL; see :func:`override_session`."""

    def __init__(self, base_url: str, rebase_host: Callable[[str], bool]) -> None:
        super().__init__()
        self.base = urlsplit(base_url)
        self.rebase_host = rebase_host
        self.refused: list[str] = []

    def send(
        self,
        request: requests.PreparedRequest,
        stream: bool = False,
        timeout: Any = None,
        verify: Any = True,
        cert: Any = None,
        proxies: dict[str, str] | None = None,
    ) -> requests.Response:
        parts = urlsplit(request.url or "")
        host = parts.hostname or ""
        if (parts.scheme, parts.netloc) != (self.base.scheme, self.base.netloc):
            if not self.rebase_host(host):
                refused = f"{parts.scheme}://{parts.netloc}"
                self.refused.append(refused)
                raise DataSourceError(
                    f"refusing to contact {refused}: an API base-URL override is set, so only "
                    f"{self.base.scheme}://{self.base.netloc} may be contacted"
                )
            request = request.copy()
            request.url = urlunsplit(
                (self.base.scheme, self.base.netloc, self.base.path + parts.path, parts.query, "")
            )
            request.headers["X-Forwarded-Host"] = parts.netloc
        # the override host is reached directly, never through an environment proxy
        return super().send(request, stream=stream, timeout=timeout, verify=verify, cert=cert)


class OverrideSession(requests.Session):
    """A ``requests.Session`` bound to one base URL (see :func:`override_session`).

    ``http_errors`` lists ``"<status> <host><path>"`` (the host the caller addressed) for every
    response with status >= 400, so callers can name the HTTP failure behind a library's less
    specific exception.
    """

    def __init__(self, base_url: str, rebase_host: Callable[[str], bool]) -> None:
        super().__init__()
        self.base_url = base_url
        self.http_errors: list[str] = []
        self.trust_env = False  # ignore HTTP(S)_PROXY: the override host is contacted directly
        adapter = _OverrideAdapter(base_url, rebase_host)
        self.refused = (
            adapter.refused
        )  # hosts refused so far, even if a library swallowed the error
        self.mount("http://", adapter)
        self.mount("https://", adapter)
        self.hooks["response"].append(self._note_error)

    def _note_error(self, response: requests.Response, *args: Any, **kwargs: Any) -> None:
        if response.status_code >= 400:
            parts = urlsplit(response.url)
            forwarded = response.request.headers.get("X-Forwarded-Host")
            if isinstance(forwarded, bytes):
                forwarded = forwarded.decode("latin-1")
            host = forwarded or parts.netloc
            self.http_errors.append(f"{response.status_code} {host}{parts.path}")


def override_session(
    base_url: str, *, rebase_host: Callable[[str], bool] | None = None
) -> OverrideSession:
    """A session that talks to ``base_url``'s host and nothing else.

    Requests already addressed to that host pass unchanged. Requests to a host for which
    ``rebase_host(host)`` is true are re-addressed to ``base_url`` with the same path and query (the
    original host travels in ``X-Forwarded-Host``). Any other request raises
    :class:`~raytrader.errors.DataSourceError` before a connection is opened.
    """
    return OverrideSession(base_url, rebase_host or (lambda _host: False))


def rebase_urls(urls: Any, base_url: str) -> Any:
    """Every URL string in ``urls`` (nested dicts/lists) with scheme and host taken from
    ``base_url`` and its path appended to ``base_url``'s path."""
    if isinstance(urls, dict):
        return {k: rebase_urls(v, base_url) for k, v in urls.items()}
    if isinstance(urls, list):
        return [rebase_urls(v, base_url) for v in urls]
    if isinstance(urls, str) and "://" in urls:
        base = urlsplit(base_url)
        parts = urlsplit(urls)
        return urlunsplit(
            (base.scheme, base.netloc, base.path + parts.path, parts.query, parts.fragment)
        )
    return urls
