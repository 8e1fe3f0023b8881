"""The ``meta_update`` pipeline, from the repository root::

    python -m pipelines.meta_update --config pipelines/configs/meta_update.yaml

or on a Ray cluster (the stack's head, a KubeRay RayJob)::

    ray job submit --address $RAY_API_SERVER_ADDRESS -- \
        python -m raytrader.meta.update --config /abs/path/meta_update.yaml

The config schema is :class:`raytrader.meta.update.MetaUpdateConfig` (strict: unknown fields are
errors). It prints one JSON line: the version registered (or none, with the refit gate's ICs).
"""

from raytrader.meta.update import main

if __name__ == "__main__":
    raise SystemExit(main())
