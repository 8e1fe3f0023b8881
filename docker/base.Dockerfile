# A local stand-in for the official Ray image (rayproject/ray:<ray>-py311-cpu) where no registry
# can be reached (CI): Debian 12's Python 3.11 in a venv laid out like the official image — user
# `ray` (uid 1000, gid 100 `users`), home /home/ray, Python in /home/ray/anaconda3/bin first on
# PATH and owned by that user — with ray[default,serve] from PyPI pinned by
# requirements/constraints.txt. scripts/build-base-image.sh builds it FROM a debootstrap rootfs
# (Python, venv, CA certificates already installed) with the repository as the context.
#
# Not for production: the official image brings a conda Python, more system packages and Ray's
# own tuning. Nothing here is pushed anywhere.
ARG ROOTFS=raytrader-base-rootfs:bookworm
FROM ${ROOTFS}

ARG RAY_VERSION=2.60.0
# pip's standard settings (a mirror or a local wheelhouse); build args are recorded in the image
# history, so never put credentials in them
ARG PIP_INDEX_URL
ARG PIP_FIND_LINKS
ARG PIP_NO_INDEX

ENV LANG=C.UTF-8 \
    HOME=/home/ray \
    PATH=/home/ray/anaconda3/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# login shells (KubeRay runs `bash -lc`) get the venv first on PATH too: Debian's /etc/profile
# resets PATH
RUN useradd --create-home --home-dir /home/ray --shell /bin/bash --uid 1000 --gid 100 ray \
    && echo 'export PATH=/home/ray/anaconda3/bin:$PATH' > /etc/profile.d/ray-python.sh

COPY requirements/constraints.txt /tmp/ray-constraints.txt
USER 1000:100
WORKDIR /home/ray
# Debian's venv brings pip 23.0; the official image's pip is current
RUN python3.11 -m venv /home/ray/anaconda3 \
    && PIP_NO_CACHE_DIR=1 pip install -q --upgrade "pip>=25" \
    && PIP_NO_CACHE_DIR=1 pip install -q -c /tmp/ray-constraints.txt "ray[default,serve]==${RAY_VERSION}" \
    && python -c "import ray, ray.serve; print('ray', ray.__version__)"
