"""The experiment API's bearer tokens: a read token, and an admin token that may also read.

The read token is ``RAYTRADER_EXPERIMENT_API_TOKEN`` (or the file named by ``..._FILE``, a mounted
Secret or ``raytrader api up``'s state dir), the admin token ``RAYTRADER_EXPERIMENT_ADMIN_TOKEN``
(or ``..._FILE``). Without a read token the API refuses to start unless in local-dev mode
(``RAYTRADER_LOCAL_DEV=1``, refused in cluster mode), where reads need no token. Without an admin
token, admin routes answer 403. Tokens are compared in constant time and never logged.

Missing or wrong token: 401 with ``WWW-Authenticate: Bearer``; the read token on an admin route:
403.
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, HTTPException
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from raytrader import settings
from raytrader.errors import ConfigError

READ_TOKEN_ENV = settings.EXPERIMENT_TOKEN_ENV
ADMIN_TOKEN_ENV = settings.EXPERIMENT_ADMIN_TOKEN_ENV
MIN_TOKEN_CHARS = 16


@dataclass(frozen=True)
class ApiTokens:
    """The read and admin tokens (``None``: unset); never in a repr. Each is refused shorter than
    :data:`MIN_TOKEN_CHARS`, and the two must differ."""

    read: str | None = field(default=None, repr=False)
    admin: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        for what, token in (("read", self.read), ("admin", self.admin)):
            if token is not None and len(token) < MIN_TOKEN_CHARS:
                raise ConfigError(
                    f"the experiment API's {what} token is shorter than {MIN_TOKEN_CHARS} characters"
                )
        if self.read is not None and self.read == self.admin:
            raise ConfigError("the experiment API's read and admin tokens must differ")

    @classmethod
    def load(cls, env: Mapping[str, str] | None = None) -> ApiTokens:
        """The tokens from ``env`` (default: the process environment), each from its variable or
        its ``_FILE``."""
        env = os.environ if env is None else env
        return cls(
            read=settings.read_secret(READ_TOKEN_ENV, env),
            admin=settings.read_secret(ADMIN_TOKEN_ENV, env),
        )

    def require_read_token(self, env: Mapping[str, str] | None = None) -> None:
        """Refuse to serve without a read token, except in local-dev mode."""
        if self.read is None and not settings.local_dev(env):
            raise ConfigError(
                f"no experiment API token: set {READ_TOKEN_ENV} (or {READ_TOKEN_ENV}_FILE); only "
                f"local-dev mode ({settings.LOCAL_DEV_ENV}=1) serves without one"
            )


#: the bearer scheme of the OpenAPI document (errors are ours, not FastAPI's 403)
bearer = HTTPBearer(auto_error=False, description=f"{READ_TOKEN_ENV} or {ADMIN_TOKEN_ENV}")
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]


def _same(offered: str, expected: str | None) -> bool:
    if expected is None:
        return False
    return hmac.compare_digest(offered.encode("utf-8"), expected.encode("utf-8"))


class Auth:
    """Checks a request's bearer token; :meth:`require_read` and :meth:`require_admin` are the
    FastAPI dependencies of the read and the admin routes."""

    def __init__(self, tokens: ApiTokens) -> None:
        self.tokens = tokens

    def check(self, given: HTTPAuthorizationCredentials | None, *, admin: bool = False) -> None:
        """Return if ``given`` may read (or, ``admin``, act); else raise 401 or 403."""
        offered = given.credentials if given is not None else ""
        is_admin = _same(offered, self.tokens.admin)
        is_reader = _same(offered, self.tokens.read)
        if admin:
            if self.tokens.admin is None:
                raise HTTPException(
                    403, f"admin actions are disabled: {ADMIN_TOKEN_ENV} is not set"
                )
            if is_admin:
                return
            if is_reader:
                raise HTTPException(403, "the read token cannot do this: use the admin token")
            raise _unauthorized("missing or wrong bearer token (admin)")
        if self.tokens.read is None or is_admin or is_reader:
            return  # (no read token: local-dev mode, reads are open)
        raise _unauthorized("missing or wrong bearer token")

    def require_read(self, cred: Credentials) -> None:
        """The dependency of a read route."""
        self.check(cred)

    def require_admin(self, cred: Credentials) -> None:
        """The dependency of an admin route."""
        self.check(cred, admin=True)


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(401, detail, headers={"WWW-Authenticate": "Bearer"})
