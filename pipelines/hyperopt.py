"""The ``hyperopt`` pipeline, from the repository root::

    python -m pipelines.hyperopt --config pipelines/configs/hyperopt.yaml

or on a Ray cluster (the stack's head, a KubeRay RayJob)::

    ray job submit --address $RAY_API_SERVER_ADDRESS -- \
        python -m raytrader.training.tune --config /abs/path/hyperopt.yaml

The config schema is the pydantic model the module documents (strict: unknown fields are errors).
It prints one JSON summary: the best parameters and config, ``best_validation_sharpe`` (the maximum
over the completed trials, so biased upward), the trial counts (completed, stopped early, never
traded, invalid, errored), the Deflated Sharpe Ratio, and the ``holdout``: the selected config
scored once on the tail no trial saw, next to buy-and-hold on the same bars.
"""

from raytrader.training.tune import main

if __name__ == "__main__":
    raise SystemExit(main())
