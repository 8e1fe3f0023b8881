"""The container image (``Dockerfile``), built for real and run the way a pod runs it.

The session's ``image`` fixture (``tests/support/image.py``) builds it where no registry can be
reached: a Docker daemon of our own, a debootstrap Debian 12 + Python 3.11 + ray[default,serve]
base (``scripts/build-base-image.sh``) and a wheelhouse of every pinned wheel, resolved by the
image's own Python and served on 127.0.0.1 to the Dockerfile's pip; nothing is downloaded twice.

The checks run the image with no network, a read-only root filesystem, a tmpfs /tmp, every
capability dropped and no ``--user`` (so the image's own user counts): the version, a backtest on
the bundled data equal to the host's to the last bit, the Serve app named by
``pipelines/serve/serve_config.yaml``, the Feast repo applied, the runtime user, no secrets, exactly
the pipelines files under /app, and that a source change rebuilds only the layers after the
dependencies, and the tools KubeRay's probes run (wget).
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

import raytrader
from tests.support.cli import run_cli
from tests.support.image import REPO, Built, docker_build, inspect

pytestmark = [pytest.mark.integration, pytest.mark.slow]

RUN_TIMEOUT_S = 300
# the build context the Dockerfile reads (.dockerignore's allow-list)
CONTEXT = (
    *("Dockerfile", ".dockerignore", "pyproject.toml", "README.md", "src", "pipelines"),
    *("requirements/constraints.txt", "docker/requirements.py"),
)
SECRET_NAME = re.compile(r"TOKEN|SECRET|PASSW|CREDENTIAL|API_?KEY|PRIVATE", re.IGNORECASE)
BACKTEST = shlex.split(
    "backtest --data goog --strategy ma_cross --param fast=10 --param slow=20 --commission 0.002"
    " --json --no-record"  # the numbers, not the experiment store (the container's root is read-only)
)
# how a restricted pod runs it; /tmp is the emptyDir a read-only root filesystem needs
LOCKED_DOWN = shlex.split(
    "--network none --read-only --tmpfs /tmp:rw,exec,size=1g --cap-drop ALL"
    " --security-opt no-new-privileges"
)


def run_in(image: Built, *cmd: str, env: dict[str, str] | None = None) -> str:
    """stdout of ``cmd`` in a locked-down container of the image (it must exit 0)."""
    flags = [f"--env={key}={value}" for key, value in (env or {}).items()]
    proc = subprocess.run(
        ["docker", "run", "--rm", *LOCKED_DOWN, *flags, image.tag, *cmd],
        env=image.env,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        check=False,
    )
    assert proc.returncode == 0, f"{shlex.join(cmd)} exited {proc.returncode}:\n{proc.stderr}"
    return proc.stdout


def test_image_prints_the_package_version(image: Built) -> None:
    assert run_in(image, "raytrader", "--version").strip() == f"raytrader {raytrader.__version__}"


def test_image_has_the_tools_kuberays_probes_run(image: Built) -> None:
    # KubeRay's default liveness/readiness probes of Ray pods are `wget ... /api/local_raylet_healthz`
    # and `/-/healthz` commands run in the Ray container (the official Ray image has wget)
    assert run_in(image, "sh", "-c", "command -v wget").strip() == "/usr/bin/wget"


def test_image_backtest_on_bundled_data_equals_the_hosts(
    image: Built, capsys: pytest.CaptureFixture[str]
) -> None:
    code, host, _ = run_cli(capsys, *BACKTEST)
    assert code == 0
    inside = json.loads(run_in(image, "raytrader", *BACKTEST))
    assert inside == json.loads(host)
    assert inside["trades"] > 0


def test_image_imports_the_serve_app_its_serve_config_names(image: Built) -> None:
    config = yaml.safe_load((REPO / "pipelines/serve/serve_config.yaml").read_text())
    module, attr = config["applications"][0]["import_path"].split(":")
    script = (
        "import importlib, yaml\n"
        "cfg = yaml.safe_load(open('pipelines/serve/serve_config.yaml'))\n"
        "module, attr = cfg['applications'][0]['import_path'].split(':')\n"
        "print(callable(getattr(importlib.import_module(module), attr)), module, attr)\n"
    )
    assert run_in(image, "python", "-c", script).split() == ["True", module, attr]


def test_image_feature_repo_applies_with_the_sqlite_profile(image: Built) -> None:
    feast = "python -m raytrader.features.feast_repo --profile sqlite"
    out = run_in(
        image,
        "sh",
        "-c",
        f"{feast} apply && {feast} feature-views list"
        " && python -c 'from raytrader.features import feast_repo; print(feast_repo.REPO_DIR)'",
        env={"RAYTRADER_FEAST_DATA": "/tmp/feast"},  # noqa: S108 - the container's tmpfs
    )
    assert "bar_features_v1" in out
    assert out.strip().splitlines()[-1] == "/app/pipelines/feature_repo"


def test_image_runs_as_uid_1000_not_root(image: Built) -> None:
    assert inspect(image.env, image.tag)["Config"]["User"] == "1000:100"
    assert run_in(image, "id", "-u").strip() == "1000"
    # the code is not the runtime user's to change; run outputs have a place of their own
    owners = run_in(
        image, "stat", "-c", "%u", "/app/pipelines", "/app/pipelines/train_rl.py", "/app/runs"
    )
    assert owners.split() == ["0", "0", "1000"]


def test_image_carries_no_secrets(image: Built) -> None:
    names = [entry.split("=", 1)[0] for entry in inspect(image.env, image.tag)["Config"]["Env"]]
    assert not [name for name in names if SECRET_NAME.search(name)], names
    history = subprocess.run(
        ["docker", "history", "--no-trunc", "--format", "{{.CreatedBy}}", image.tag],
        env=image.env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert not SECRET_NAME.search(history)
    # no credential files, no stack state (its tokens live in ~/.local/share/raytrader/stack)
    found = run_in(
        image,
        "sh",
        "-c",
        "find / -xdev \\( -name .netrc -o -name .pypirc -o -name .git-credentials"
        " -o -path '*/.docker/config.json' -o -path '*/.local/share/raytrader' \\) -print"
        " 2>/dev/null; true",
    )
    assert found.split() == []


def test_image_app_dir_holds_exactly_the_pipelines(image: Built) -> None:
    files = set(run_in(image, "find", "/app", "-type", "f").split())
    expected = {
        f"/app/{path.relative_to(REPO)}"
        for path in (REPO / "pipelines").rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"
    }
    assert files == expected
    entries = (
        "serve/serve_config.yaml",
        "feature_repo/feature_store.yaml",
        "feature_repo/definitions.py",
        "train_rl.py",
        "configs/train_rl.yaml",
    )
    assert {f"/app/pipelines/{entry}" for entry in entries} <= files


def test_source_change_rebuilds_only_the_layers_after_the_dependencies(
    image: Built, tmp_path: Path
) -> None:
    context = tmp_path / "context"
    for name in CONTEXT:
        (context / name).parent.mkdir(parents=True, exist_ok=True)
        if (REPO / name).is_dir():
            ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
            shutil.copytree(REPO / name, context / name, ignore=ignore)
        else:
            shutil.copy2(REPO / name, context / name)
    with (context / "src/raytrader/__init__.py").open("a") as f:
        f.write("# touched by test_image\n")
    touched = f"{image.tag}-touched"
    try:
        seconds = docker_build(
            image.env, context, touched, image.build_args, image.logs / "touched.log"
        )
        (image.logs / "touched_rebuild_s.txt").write_text(f"{seconds:.1f}\n")
        before = inspect(image.env, image.tag)["RootFS"]["Layers"]
        after = inspect(image.env, touched)["RootFS"]["Layers"]
        n_base = len(inspect(image.env, image.base)["RootFS"]["Layers"])
        # from the cache: the base, the dependency inputs and the dependencies (1.3 GB); new: the
        # wheel and what follows it
        assert len(after) == len(before)
        assert after[: n_base + 2] == before[: n_base + 2]
        assert after[n_base + 2] != before[n_base + 2]
    finally:
        subprocess.run(
            ["docker", "rmi", "--force", touched], env=image.env, capture_output=True, check=False
        )
        subprocess.run(
            ["docker", "image", "prune", "--force"], env=image.env, capture_output=True, check=False
        )
