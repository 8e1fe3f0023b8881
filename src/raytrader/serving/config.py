"""The decision service's configuration and its secrets.

:class:`ServiceConfig` is the ``args`` of the Serve application in the ``serveConfigV2`` file
(``pipelines/serve/serve_config.yaml``, the same file the Kubernetes RayService embeds), so a Helm
value, ``raytrader serve up --set key=value`` or a test can name every field.

Tokens never live in a config file. The API token comes from ``RAYTRADER_API_TOKEN`` (or the
file named by ``RAYTRADER_API_TOKEN_FILE``: a mounted Kubernetes Secret, the local stack's state
dir), the admin token from ``RAYTRADER_ADMIN_TOKEN`` (or ``..._FILE``). Without an API token the
service refuses to start unless ``local_dev`` is set (or ``RAYTRADER_LOCAL_DEV=1``); in local-dev
mode an unset token means no auth. Without an admin token, admin routes answer 403.
"""

from __future__ import annotations

import os
from typing import Literal

from pydantic import Field, field_validator

from raytrader import settings
from raytrader.config import StrictConfig
from raytrader.contract import MODEL_URI_RE
from raytrader.errors import ConfigError

TOKEN_ENV = settings.TOKEN_ENV
ADMIN_TOKEN_ENV = settings.ADMIN_TOKEN_ENV
LOCAL_DEV_ENV = settings.LOCAL_DEV_ENV
read_secret = settings.read_secret
MIN_TOKEN_CHARS = 16


class ServiceConfig(StrictConfig):
    """Everything the decision service reads besides its tokens (module docstring)."""

    #: the registry alias (``models:/<name>@<alias>``) the service follows, or a pinned version
    #: (``models:/<name>/<n>``, never swapped)
    model_uri: str = "models:/raytrader-ensemble@champion"
    #: MLflow tracking server (default: ``MLFLOW_TRACKING_URI``)
    tracking_uri: str | None = None
    #: how often each model replica checks the alias (0: only on reload/reconfigure)
    poll_interval_s: float = Field(default=5.0, ge=0.0)
    #: a candidate version's smoke decision must take at most this long (median of 5)
    latency_budget_ms: float = Field(default=100.0, gt=0.0)
    #: Feast profile: ``redis`` (the stack, the cluster) or ``sqlite`` (embedded mode)
    feast_profile: Literal["redis", "sqlite"] = "redis"
    #: Feast data dir / Redis connection (default: ``RAYTRADER_FEAST_DATA`` /
    #: ``RAYTRADER_REDIS_CONNECTION``)
    feast_data: str | None = None
    redis: str | None = None
    #: the bar length of the features the service reads (the online rows of this timeframe) and
    #: of the models it serves: a version tagged with another timeframe is refused
    timeframe: str = "1d"
    #: features older than this (their bar's close to now) are stale; None: two bars of
    #: ``timeframe`` (a feature row is one bar old when it arrives and two when a bar is missing)
    max_feature_age_s: float | None = Field(default=None, gt=0.0)
    #: a stale symbol: ``reject`` the request (503 naming it and its age) or ``flag`` the decision
    stale: Literal["reject", "flag"] = "reject"
    #: a row whose feature look-backs are not yet full (``warm`` false): ``reject`` (503) or
    #: ``flag`` (decide, ``warm: false`` in the answer)
    unwarm: Literal["reject", "flag"] = "reject"
    #: symbols whose current online rows every candidate version must decide on (no member
    #: without a decision on a warm row) before it is swapped in, besides its own input example
    probe_symbols: tuple[str, ...] = ()
    #: at most this many symbols per request (413 beyond)
    max_symbols: int = Field(default=64, ge=1, le=10_000)
    #: no token needed when none is set (never in a cluster)
    local_dev: bool = False

    @field_validator("model_uri")
    @classmethod
    def _uri(cls, value: str) -> str:
        if not MODEL_URI_RE.match(value):
            raise ValueError(f"{value!r} is not models:/<name>@<alias> or models:/<name>/<version>")
        return value

    @field_validator("timeframe")
    @classmethod
    def _timeframe(cls, value: str) -> str:
        from raytrader.data.timeframe import Timeframe

        return Timeframe.parse(value).name

    @property
    def feature_age_limit_s(self) -> float:
        """``max_feature_age_s``, or two bars of ``timeframe``."""
        if self.max_feature_age_s is not None:
            return self.max_feature_age_s
        from raytrader.data.timeframe import Timeframe

        return 2.0 * Timeframe.parse(self.timeframe).seconds

    @property
    def model_name(self) -> str:
        m = MODEL_URI_RE.match(self.model_uri)
        assert m is not None  # noqa: S101 - validated above
        return m["name"]

    @property
    def alias(self) -> str | None:
        m = MODEL_URI_RE.match(self.model_uri)
        assert m is not None  # noqa: S101 - validated above
        return m["alias"]

    @property
    def pinned_version(self) -> str | None:
        m = MODEL_URI_RE.match(self.model_uri)
        assert m is not None  # noqa: S101 - validated above
        return m["version"]


class Tokens(StrictConfig):
    """The API and admin tokens the service checks (never logged or returned)."""

    api: str | None = Field(repr=False)
    admin: str | None = Field(repr=False)

    @classmethod
    def load(cls, config: ServiceConfig, env: dict[str, str] | None = None) -> Tokens:
        env = dict(os.environ) if env is None else env
        api, admin = read_secret(TOKEN_ENV, env), read_secret(ADMIN_TOKEN_ENV, env)
        local = settings.local_dev(env, configured=config.local_dev)
        if api is None and not local:
            raise ConfigError(
                f"no API token: set {TOKEN_ENV} (or {TOKEN_ENV}_FILE); "
                f"only local-dev mode (local_dev: true or {LOCAL_DEV_ENV}=1) runs without one"
            )
        for what, token in (("API", api), ("admin", admin)):
            if token is not None and len(token) < MIN_TOKEN_CHARS:
                raise ConfigError(f"the {what} token is shorter than {MIN_TOKEN_CHARS} characters")
        return cls(api=api, admin=admin)
