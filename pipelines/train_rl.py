"""The ``train_rl`` pipeline, from the repository root::

    python -m pipelines.train_rl --config pipelines/configs/train_rl.yaml

or on a Ray cluster (the stack's head, a KubeRay RayJob)::

    ray job submit --address $RAY_API_SERVER_ADDRESS -- \
        python -m raytrader.training.rl --config /abs/path/train_rl.yaml

The config schema is the pydantic model the module documents (strict: unknown fields are errors).
"""

from raytrader.training.rl import main

if __name__ == "__main__":
    raise SystemExit(main())
