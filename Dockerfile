# raytrader's image: the raytrader wheel with its `stack` extra (MLflow, Feast + Redis, Kafka,
# Prometheus, Ray Serve, psycopg2) and its `search` extra (Tune, Optuna, scikit-learn) on the
# official Ray image, and /app/pipelines: the RayJob entry points (`python pipelines/hyperopt.py
# --config pipelines/configs/hyperopt.yaml`), their configs, the Serve config and the Feast repo.
#
#   docker build -t raytrader:0.1.0 .
#   docker build --build-arg EXTRAS=stack,train -t raytrader:0.1.0-train .
#       # + RLlib and torch: what train_rl.py and the searches of RL agents import. PyPI's torch
#       # is the CUDA build (about 2.6 GB of NVIDIA libraries more; it runs on CPU too), hence
#       # not in the default image, which runs hyperopt.py (rule and supervised targets) and
#       # train_supervised.py
#   docker build --build-arg BASE_IMAGE=raytrader-base:ray2.60.0-py311-cpu -t raytrader:0.1.0 .
#       # where Docker Hub cannot be reached: scripts/build-base-image.sh builds that stand-in
#
# Versions are pinned by requirements/constraints.txt. Dependencies go in before the source, so a
# change under src/ or pipelines/ rebuilds only the wheel and the last layers. Plain Dockerfile
# syntax (no RUN --mount) so that the classic builder builds it too: Debian 12's docker.io has no
# buildx. The image runs as uid 1000 (the Ray image's `ray`) and holds no secrets: tokens and
# passwords come from the environment at run time (Kubernetes Secrets).
#
# Writable paths at run time: /tmp (Ray's session dir /tmp/ray, numba's cache, matplotlib's config)
# and /app/runs (run outputs). With a read-only root filesystem mount an emptyDir at /tmp.
ARG BASE_IMAGE=rayproject/ray:2.60.0-py311-cpu

# ---- wheel: raytrader's wheel from the source (setuptools, in pip's isolated build env) ----------
FROM ${BASE_IMAGE} AS wheel
# pip's standard settings (a mirror, a local wheelhouse); build args are recorded in the image
# history, so never put credentials in them
ARG PIP_INDEX_URL
ARG PIP_FIND_LINKS
ARG PIP_NO_INDEX
USER root
WORKDIR /build
COPY pyproject.toml README.md ./
COPY src ./src
RUN python -m pip wheel -q --no-cache-dir --no-deps --wheel-dir /dist .

# ---- the image ---------------------------------------------------------------------------------
FROM ${BASE_IMAGE}
ARG PIP_INDEX_URL
ARG PIP_FIND_LINKS
ARG PIP_NO_INDEX
# pyproject.toml extras to install: stack (the services' clients, Ray Serve, psycopg2; also what the
# experiment API runs on), search (Tune, Optuna, scikit-learn) and dashboard (Streamlit, for the
# chart's dashboard Deployment); stack,train adds RLlib and torch (see above)
ARG EXTRAS=stack,search,dashboard

LABEL org.opencontainers.image.title="raytrader" \
      org.opencontainers.image.description="Train, tune, backtest and serve ensembles of trading strategies on Ray" \
      org.opencontainers.image.licenses="Apache-2.0"

# 1. dependencies: core + extras from pyproject.toml, as the base image's user, into its Python
COPY pyproject.toml requirements/constraints.txt docker/requirements.py /tmp/raytrader-deps/
RUN python /tmp/raytrader-deps/requirements.py /tmp/raytrader-deps/pyproject.toml "$EXTRAS" \
        > /tmp/requirements.txt \
    && python -m pip install -q --no-cache-dir \
        -c /tmp/raytrader-deps/constraints.txt -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

# 2. raytrader itself (its dependencies are all in already)
COPY --from=wheel /dist/ /tmp/raytrader-dist/
RUN python -m pip install -q --no-cache-dir --no-deps /tmp/raytrader-dist/raytrader-*.whl

# 3. the pipelines: entry points, configs, Serve config, Feast repo; owned by root, read-only to
#    the runtime user; run outputs go to /app/runs
USER root
WORKDIR /app
COPY pipelines ./pipelines
RUN mkdir -p /app/runs && chown 1000:100 /app/runs

# the feature repo's default is found relative to the source tree, which an installed wheel is not
ENV RAYTRADER_FEAST_REPO=/app/pipelines/feature_repo \
    NUMBA_CACHE_DIR=/tmp/numba \
    MPLCONFIGDIR=/tmp/matplotlib \
    PYTHONUNBUFFERED=1

# numeric, so that Kubernetes can check runAsNonRoot
USER 1000:100
CMD ["raytrader", "--help"]
