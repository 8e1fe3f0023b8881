"""The ``hyperopt`` pipeline, from the repository root::

    python -m pipelines.hyperopt --config pipelines/configs/hyperopt.yaml

or on a Ray cluster (the stack's head, a KubeRay RayJob)::

    ray job submit --address $RAY_API_SERVER_ADDRESS -- \
        python -m raytrader.training.tune --config /abs/path/hyperopt.yaml

The config schema is the pydantic model the module documents (strict: unknown fields are errors).
"""

from raytrader.training.tune import main

if __name__ == "__main__":
    raise SystemExit(main())
