"""Images reach the node without a registry (``scripts/cluster/load-image.sh``), including a new
version under a name the node already holds while containerd collects garbage: containerd 1.6's
unpacker reuses the layers the old and new versions share without holding them, so a plain ``ctr
images import`` failed here 3 times in 12 ("parent snapshot ... does not exist") — the failure CI
met when the raytrader image changed under the same tag.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster.conftest import SCRIPTS, Cluster, pin

pytestmark = [pytest.mark.integration, pytest.mark.slow]

NAME = "raytrader.local/load-test:1"
PAUSE = f"registry.k8s.io/pause:{pin('PAUSE_VERSION')}"  # on every node, unrelated to NAME
SHARED_LAYERS = 8  # each a few MB: the old and the new version share all of them


def _layer(path: Path, name: str, data: bytes) -> Path:
    src = path.with_suffix(".d")
    (src / name).parent.mkdir(parents=True, exist_ok=True)
    (src / name).write_bytes(data)
    with tarfile.open(path, "w") as tar:
        tar.add(src / name, arcname=name)
    return path


def _image_tar(out: Path, layers: list[Path]) -> Path:
    """A docker-archive of ``layers`` tagged :data:`NAME` (scripts/cluster/image_tar.py)."""
    args = [arg for layer in layers for arg in ("--layer", str(layer))]
    subprocess.run(
        [sys.executable, str(SCRIPTS / "image_tar.py"), str(out), "--tag", NAME, *args],
        check=True,
    )
    return out


def _image(tmp: Path, shared: list[Path], version: int) -> Path:
    top = _layer(tmp / f"top{version}.tar", "version", str(version).encode())
    return _image_tar(tmp / f"image{version}.tar", [*shared, top])


def _load(cluster: Cluster, source: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(SCRIPTS / "load-image.sh"), source],
        env=cluster.env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _image_id(cluster: Cluster, name: str) -> str:
    out = cluster.run(
        "crictl", "inspecti", "-o", "go-template", "--template", "{{.status.id}}", name
    )
    return out.strip()


@pytest.fixture
def garbage_collection(cluster: Cluster) -> Iterator[None]:
    """containerd collecting garbage again and again: a second name of the pause image, removed
    with --sync (a name of the image under test would hold its layers and hide the race)."""
    stop = threading.Event()
    poke_name = "raytrader.local/gc-poke:1"

    def poke() -> None:
        for args in (("tag", "--force", PAUSE, poke_name), ("rm", "--sync", poke_name)):
            subprocess.run(["ctr", "images", *args], env=cluster.env, capture_output=True)

    def loop() -> None:
        while not stop.is_set():
            poke()

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    yield
    stop.set()
    thread.join(timeout=60)


def test_a_new_version_under_the_same_name_loads_while_garbage_is_collected(
    cluster: Cluster, tmp_path: Path, garbage_collection: None
) -> None:
    shared = [
        _layer(tmp_path / f"shared{i}.tar", f"shared/{i}", os.urandom(3_000_000))
        for i in range(SHARED_LAYERS)
    ]
    try:
        # first an unrelated image under the name: the node's CRI gives the first image of a name a
        # second reference (its id), which would hold the shared layers for every later version
        top = _layer(tmp_path / "unrelated-layer.tar", "unrelated", b"0")
        unrelated = _image_tar(tmp_path / "unrelated.tar", [top])
        assert _load(cluster, str(unrelated)).returncode == 0
        for version in range(1, 13):
            tar = _image(tmp_path, shared, version)
            done = _load(cluster, str(tar))
            assert done.returncode == 0, f"version {version}: {done.stderr}"
            with tarfile.open(tar) as archive:
                manifest = archive.extractfile("manifest.json").read().decode()
            assert _image_id(cluster, NAME).removeprefix("sha256:") in manifest
        # the replaced version's second name is gone, and loading the same archive again does nothing
        names = cluster.run("ctr", "images", "ls", "-q").split()
        assert [n for n in names if n.startswith(NAME)] == [NAME]
        again = _load(cluster, str(tar))
        assert again.returncode == 0, again.stderr
        assert "is loaded already" in again.stderr
    finally:
        subprocess.run(["crictl", "rmi", NAME], env=cluster.env, capture_output=True)


def test_what_is_not_an_image_is_a_clear_error(cluster: Cluster, tmp_path: Path) -> None:
    not_an_archive = tmp_path / "notes.tar"
    with tarfile.open(not_an_archive, "w") as tar:
        tar.add(_layer(tmp_path / "x.tar", "readme", b"hello"), arcname="x.tar")
    done = _load(cluster, str(not_an_archive))
    assert done.returncode == 2
    assert (
        done.stderr.strip()
        == f"error: {not_an_archive} is not a docker-archive: it has no manifest.json"
    )
    done = _load(cluster, "raytrader.local/never-built:0")
    assert done.returncode == 2
    assert "raytrader.local/never-built:0" in done.stderr
