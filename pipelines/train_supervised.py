"""The ``train_supervised`` pipeline, from the repository root::

    python -m pipelines.train_supervised --config pipelines/configs/train_supervised.yaml

or on a Ray cluster (the stack's head, a KubeRay RayJob)::

    ray job submit --address $RAY_API_SERVER_ADDRESS -- \
        python -m raytrader.training.supervised --config /abs/path/train_supervised.yaml

The config schema is the pydantic model the module documents (strict: unknown fields are errors).
"""

from raytrader.training.supervised import main

if __name__ == "__main__":
    raise SystemExit(main())
