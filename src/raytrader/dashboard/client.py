"""A small typed client of the experiment API: base URL + bearer token over :mod:`httpx`.

:meth:`ApiClient.get` returns the decoded JSON body, :meth:`ApiClient.pages` walks a cursor
listing (``next_cursor``) up to a row cap, :meth:`ApiClient.post` sends an admin action. Every
failure, an unreachable API included, is a :class:`DashboardError` carrying the API's ``detail``
(and the HTTP status, ``None`` when no answer came), never an :mod:`httpx` exception.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import httpx

from raytrader import settings
from raytrader.errors import ConfigError

READ_TOKEN_ENV = settings.EXPERIMENT_TOKEN_ENV
ADMIN_TOKEN_ENV = settings.EXPERIMENT_ADMIN_TOKEN_ENV
#: rows :meth:`ApiClient.pages` collects unless told otherwise
DEFAULT_ROW_CAP = 5000
TIMEOUT_S = 15.0

Params = Mapping[str, str | int | float | bool | None]


class DashboardError(Exception):
    """A request the API refused or could not answer: ``detail`` is the API's (or why no answer
    came), ``status`` the HTTP status (``None``: unreachable)."""

    def __init__(self, detail: str, *, status: int | None = None, url: str = "") -> None:
        self.detail = detail
        self.status = status
        self.url = url
        where = f" ({url})" if url else ""
        prefix = f"HTTP {status}: " if status is not None else ""
        super().__init__(f"{prefix}{detail}{where}")

    @property
    def missing_route(self) -> bool:
        """The API does not offer this route (404 without a resource, or 405)."""
        return self.status == 405 or (self.status == 404 and self.detail == "Not Found")


def _detail(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:500] or response.reason_phrase
    if isinstance(body, dict) and "detail" in body:
        detail = body["detail"]
        return detail if isinstance(detail, str) else str(detail)
    return str(body)[:500]


class ApiClient:
    """The experiment API at ``base_url`` with the bearer ``token`` (``None``: none sent).

    ``http`` replaces the underlying :class:`httpx.Client` (tests pass a Starlette
    ``TestClient``); it is then used as is, with ``base_url`` only naming the API in errors.
    """

    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        *,
        timeout: float = TIMEOUT_S,
        http: httpx.Client | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        self._http = http if http is not None else httpx.Client(timeout=timeout)
        self._own = http is None

    @classmethod
    def from_env(cls, base_url: str | None = None) -> ApiClient:
        """The API of ``RAYTRADER_EXPERIMENT_API_URL`` with the read token of
        ``RAYTRADER_EXPERIMENT_API_TOKEN`` (or its ``_FILE``)."""
        return cls(settings.api_url(base_url), read_token())

    def with_token(self, token: str | None) -> ApiClient:
        """The same API (and connection pool) with another token."""
        other = ApiClient(self.base_url, token, http=self._http)
        other._own = False
        return other

    def close(self) -> None:
        if self._own:
            self._http.close()

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------------------- requests
    def _url(self, path: str) -> str:
        if path.startswith(("http://", "https://")):
            return path
        return f"{self.base_url}/{path.lstrip('/')}"

    def _request(
        self, method: str, path: str, *, params: Params | None = None, json: Any = None
    ) -> Any:
        url = self._url(path)
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        query = {k: v for k, v in (params or {}).items() if v is not None and v != ""}
        try:
            response = self._http.request(method, url, params=query, json=json, headers=headers)
        except httpx.TimeoutException as exc:
            raise DashboardError(
                f"the experiment API at {self.base_url} did not answer in time ({exc})", url=url
            ) from exc
        except httpx.HTTPError as exc:
            raise DashboardError(
                f"the experiment API at {self.base_url} is unreachable: {exc}", url=url
            ) from exc
        if response.status_code >= 400:
            raise DashboardError(_detail(response), status=response.status_code, url=url)
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError as exc:
            raise DashboardError(
                f"the experiment API at {self.base_url} answered with something not JSON",
                status=response.status_code,
                url=url,
            ) from exc

    def get(self, path: str, **params: str | int | float | bool | None) -> Any:
        """``GET path`` with the query ``params`` (``None`` and ``""`` left out): the JSON body."""
        return self._request("GET", path, params=params)

    def post(self, path: str, json: Any = None) -> Any:
        """``POST path`` with the JSON body ``json``: the JSON body of the answer."""
        return self._request("POST", path, json=json)

    def pages(
        self, path: str, *, cap: int = DEFAULT_ROW_CAP, **params: str | int | float | bool | None
    ) -> list[dict[str, Any]]:
        """Every item of the cursor listing ``path`` (following ``next_cursor``), at most
        ``cap`` of them."""
        items: list[dict[str, Any]] = []
        cursor: str | None = None
        while len(items) < cap:
            body = self.get(path, **params, cursor=cursor)
            if not isinstance(body, dict) or not isinstance(body.get("items"), list):
                raise DashboardError(f"{path} is not a listing (no items)", url=self._url(path))
            items.extend(body["items"])
            cursor = body.get("next_cursor")
            if not cursor:
                break
        return items[:cap]

    def route_paths(self) -> set[str]:
        """The paths the API's OpenAPI document lists."""
        body = self.get("/openapi.json")
        paths = body.get("paths", {}) if isinstance(body, dict) else {}
        return set(paths)


def read_token(admin: bool = False, env: Mapping[str, str] | None = None) -> str | None:
    """The read (``admin``: admin) token from its variable or ``_FILE``; ``None`` when unset (a
    :class:`DashboardError` when its file cannot be read)."""
    env = os.environ if env is None else env
    name = ADMIN_TOKEN_ENV if admin else READ_TOKEN_ENV
    try:
        return settings.read_secret(name, env)
    except ConfigError as exc:
        raise DashboardError(str(exc)) from exc
