"""The raytrader image, built once per session for the tests that run it (tests/deploy/test_image.py)
and the cluster that deploys it (tests/cluster/).

Where no registry can be reached (CI) the image is built on a local stand-in for the official Ray
image: ``scripts/dockerd.sh`` starts a Docker daemon of our own (data root under
``~/.cache/raytrader/docker``, so layers survive between runs) and
``scripts/build-base-image.sh --wheelhouse`` builds the base and a wheelhouse of every pinned wheel,
served on 127.0.0.1 while the Dockerfile is built with pip reading only it. The classic builder
builds it (``DOCKER_BUILDKIT=0``; Debian 12 ships no buildx). A missing Docker or root fails the
session with the scripts' message; nothing skips. Logs and timings (``times.json``) are left in
pytest's temporary directory, ``image*/``.
"""

from __future__ import annotations

import fcntl
import functools
import http.server
import json
import os
import shlex
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
IMAGE = "raytrader:test"
# fixed: the build args are part of the classic builder's cache key
WHEELHOUSE_PORT = int(os.environ.get("RAYTRADER_WHEELHOUSE_PORT", "31080"))
LOCK = Path("/tmp/raytrader-test-image.lock")  # noqa: S108 - one image session per machine
BUILD_TIMEOUT_S = 1800


@dataclass(frozen=True)
class Built:
    """The image under test, the daemon that holds it and how it was built."""

    tag: str
    base: str
    env: dict[str, str]
    logs: Path
    build_args: tuple[str, ...]


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def run_logged(cmd: list[str], env: dict[str, str], log: Path, timeout: float) -> str:
    """Run ``cmd`` in the repository with stderr to ``log``: its stdout, or fail with the log."""
    with log.open("a") as err:
        err.write(f"$ {shlex.join(cmd)}\n")
        err.flush()
        proc = subprocess.run(
            cmd,
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            timeout=timeout,
            check=False,
        )
    if proc.returncode != 0:
        tail = "".join(log.read_text().splitlines(keepends=True)[-40:])
        pytest.fail(f"{shlex.join(cmd)} exited {proc.returncode}:\n{proc.stdout}\n{tail}")
    return proc.stdout


def docker_build(
    env: dict[str, str], context: Path, tag: str, args: tuple[str, ...], log: Path
) -> float:
    """``docker build`` of ``context`` as ``tag``; the seconds it took."""
    cmd = ["docker", "build", "--network=host", "--force-rm", *args, "-t", tag, str(context)]
    start = time.monotonic()
    with log.open("a") as out:
        proc = subprocess.run(
            cmd, env=env, stdout=out, stderr=subprocess.STDOUT, timeout=BUILD_TIMEOUT_S, check=False
        )
    if proc.returncode != 0:
        tail = "".join(log.read_text().splitlines(keepends=True)[-40:])
        pytest.fail(f"{shlex.join(cmd)} exited {proc.returncode}:\n{tail}")
    return time.monotonic() - start


def inspect(env: dict[str, str], tag: str) -> Any:
    out = subprocess.run(
        ["docker", "image", "inspect", tag], env=env, capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout)[0]


@pytest.fixture(scope="session")
def image(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Built]:
    logs = tmp_path_factory.mktemp("image")
    env = {**os.environ, "DOCKER_BUILDKIT": "0"}
    with LOCK.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        dockerd = ["bash", "scripts/dockerd.sh"]
        status = subprocess.run([*dockerd, "status"], cwd=REPO, env=env, check=False)
        started = status.returncode != 0
        out = run_logged([*dockerd, "start"], env, logs / "dockerd.log", 120)
        env["DOCKER_HOST"] = out.strip().splitlines()[-1].removeprefix("export DOCKER_HOST=")
        times: dict[str, float] = {}
        try:
            start = time.monotonic()
            wheelhouse = logs / "wheelhouse"
            script = ["bash", "scripts/build-base-image.sh", "--wheelhouse", str(wheelhouse)]
            base = run_logged(script, env, logs / "base.log", BUILD_TIMEOUT_S).split()[-1]
            times["base_and_wheelhouse_s"] = time.monotonic() - start
            handler = functools.partial(_QuietHandler, directory=str(wheelhouse))
            server = http.server.ThreadingHTTPServer(("127.0.0.1", WHEELHOUSE_PORT), handler)
            threading.Thread(target=server.serve_forever, daemon=True).start()
            try:
                pip = (f"PIP_FIND_LINKS=http://127.0.0.1:{WHEELHOUSE_PORT}/", "PIP_NO_INDEX=1")
                args = tuple(f"--build-arg={arg}" for arg in (f"BASE_IMAGE={base}", *pip))
                times["image_s"] = docker_build(env, REPO, IMAGE, args, logs / "build.log")
                # the images this build replaced, and the layers only they used
                run_logged(["docker", "image", "prune", "--force"], env, logs / "build.log", 300)
                times["image_bytes"] = inspect(env, IMAGE)["Size"]
                (logs / "times.json").write_text(json.dumps(times, indent=1))
                yield Built(IMAGE, base, env, logs, args)
            finally:
                server.shutdown()
                server.server_close()
                shutil.rmtree(wheelhouse, ignore_errors=True)  # 0.5 GB, rebuilt from pip's cache
        finally:
            if started:
                subprocess.run([*dockerd, "stop"], cwd=REPO, env=env, check=False)
