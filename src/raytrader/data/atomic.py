"""Crash-safe file writes: a temp file in the target directory, fsync, rename, fsync the directory.

A reader sees the old file or the new one, never a half-written one; temp files are hidden (leading
dot), so Parquet dataset readers skip a stray one left by a crash.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Any

from raytrader.errors import StoreError


def fsync_dir(directory: Path) -> None:
    """Make a rename in ``directory`` durable (not every platform can open a directory)."""
    with contextlib.suppress(OSError):
        dfd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)


def write_parquet_atomic(table: Any, final: Path, *, what: str, prefix: str | None = None) -> None:
    """Write a pyarrow ``table`` to ``final`` atomically (mode 0644); :class:`StoreError` names
    ``what`` and the path on failure, and no temp file is left behind."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        fd, tmp_name = tempfile.mkstemp(
            dir=final.parent, prefix=prefix or f".{final.name}.", suffix=".tmp"
        )
    except OSError as exc:
        raise StoreError(f"cannot write {what} to {final.parent}: {exc}") from exc
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as fh:
            os.fchmod(fh.fileno(), 0o644)  # mkstemp creates 0600; the files are meant to be shared
            pq.write_table(table, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, final)
    except (OSError, pa.ArrowException) as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise StoreError(f"cannot write {what} to {final}: {exc}") from exc
