"""``raytrader meta update``: refit a registered meta ensemble on new bars and register the refit
under ``challenger`` — only if it is no worse than the version it would replace.

The version named by ``model`` (default ``models:/raytrader-meta@champion``) carries its build
config; the refit is that config on ``data`` (default: the version's own data spec, which for a
file or a live-filled store holds the new bars). Both predictors are scored by rank IC on the
bars after both fits whose labels have closed (:func:`raytrader.meta.model.compare`); the refit is
registered only when its IC is at least the current one's minus ``tolerance``. Promotion is the
registry's: ``raytrader models promote raytrader-meta <version> champion`` moves the alias, and
the decision service validates and hot-swaps the new version as it does any other.

On a Ray cluster (a KubeRay RayJob; the chart's ``jobs.train.pipeline: meta_update``)::

    python pipelines/meta_update.py --config pipelines/configs/meta_update.yaml
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Literal

from pydantic import Field

from raytrader.config import StrictConfig


class MetaUpdateConfig(StrictConfig):
    """``raytrader meta update --config ...`` (module docstring)."""

    model: str = "models:/raytrader-meta@champion"
    #: the bars to refit on (default: the version's own data spec)
    data: str | None = None
    #: the refit may be this much worse in rank IC and still replace the version
    tolerance: float = Field(0.01, ge=0.0)
    alias: Literal["challenger", "champion"] | None = "challenger"
    output_dir: str = "runs"
    tracking_uri: str | None = None


def update_meta(config: MetaUpdateConfig) -> dict[str, Any]:
    """Refit and, when the gate passes, register (module docstring); the build's summary with
    ``replaces`` (the version refitted) and ``gate`` (both ICs)."""
    from raytrader.meta.model import build_meta, load_meta
    from raytrader.tracking import resolve_uri

    uri = resolve_uri(config.tracking_uri, config.output_dir)
    version, current = load_meta(config.model, uri)
    refit = current.config.model_copy(
        update={
            "data": config.data or current.config.data,
            "alias": config.alias,
            "output_dir": config.output_dir,
            "tracking_uri": uri,
        }
    )
    result = build_meta(refit, current=current.spec, tolerance=config.tolerance)
    result.pop("decisions", None)
    return {**result, "replaces": version, "data": refit.data}


def main(argv: list[str] | None = None) -> int:
    """``python -m raytrader.meta.update --config meta_update.yaml``: one JSON line."""
    from raytrader.config import pipeline_main

    def rows(config: MetaUpdateConfig, args: Any) -> Iterator[dict[str, Any]]:
        yield update_meta(config)

    return pipeline_main("python -m raytrader.meta.update", MetaUpdateConfig, rows, argv)


if __name__ == "__main__":
    raise SystemExit(main())
