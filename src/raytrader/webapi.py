"""What raytrader's HTTP services (the decision service, the experiment API) share: one error
body, ``{"detail": "..."}``, and a 422 for a malformed request naming every field at fault
(``body.rows.0.close: Input should be a valid number; query.limit: ...``)."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse


def validation_detail(exc: RequestValidationError) -> str:
    """One ``where: what`` per problem, joined by ``; ``."""
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err.get("loc", ()))
        parts.append(f"{loc}: {err.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request"


def name_invalid_fields(app: FastAPI) -> None:
    """Answer a malformed request with 422 and :func:`validation_detail`."""

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": validation_detail(exc)}, status_code=422)
