#!/usr/bin/env python3
"""Write a container image as a docker-archive tar, with no Docker and no registry.

    image_tar.py OUT.tar --tag registry.k8s.io/etcd:3.7.0-0 --entrypoint /usr/local/bin/etcd \
        --file BIN/etcd:/usr/local/bin/etcd [--layer ROOTFS.tar] [--symlink /bin/sh:busybox]
    [--user 65532] [--env K=V]

Each ``--layer`` (a tar of a root filesystem, e.g. a debootstrap tarball) becomes one layer, then
all ``--file SRC:DST`` and ``--symlink DST:TARGET`` go into one more layer.
``ctr -n k8s.io images import OUT.tar`` (and ``docker load``) accept the result. The output depends
only on the inputs (fixed mtimes, sorted entries), so an unchanged image has an unchanged digest
and containerd keeps its unpacked copy.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import sys
import tarfile
import tempfile
from pathlib import Path

EPOCH = 0  # every entry's mtime and the config's "created": reproducible digests


def _add_parents(tar: tarfile.TarFile, dst: str, seen: set[str]) -> None:
    parts = dst.strip("/").split("/")[:-1]
    for i in range(1, len(parts) + 1):
        name = "/".join(parts[:i])
        if name in seen:
            continue
        seen.add(name)
        info = tarfile.TarInfo(name)
        info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, EPOCH
        tar.addfile(info)


def files_layer(path: Path, files: list[tuple[Path, str]], links: list[tuple[str, str]]) -> None:
    """One layer with each SRC at DST (mode kept, owner root) and each symlink, parents created."""
    seen: set[str] = set()
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        for dst, target in sorted(links):
            _add_parents(tar, dst, seen)
            info = tarfile.TarInfo(dst.strip("/"))
            info.type, info.linkname, info.mtime = tarfile.SYMTYPE, target, EPOCH
            tar.addfile(info)
        for src, dst in sorted(files, key=lambda f: f[1]):
            if not src.is_file():
                raise SystemExit(f"error: {src}: no such file (for {dst})")
            _add_parents(tar, dst, seen)
            info = tarfile.TarInfo(dst.strip("/"))
            info.size, info.mtime = src.stat().st_size, EPOCH
            info.mode = src.stat().st_mode & 0o7777
            with src.open("rb") as f:
                tar.addfile(info, f)


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--tag", required=True)
    parser.add_argument("--entrypoint", nargs="+", default=[])
    parser.add_argument("--cmd", nargs="+", default=None)
    parser.add_argument("--layer", type=Path, action="append", default=[])
    parser.add_argument("--file", action="append", default=[], help="SRC:DST")
    parser.add_argument("--symlink", action="append", default=[], help="DST:TARGET")
    parser.add_argument(
        "--stop-signal", default="", help="e.g. SIGINT (the runtime's default: SIGTERM)"
    )
    parser.add_argument("--user", default="")
    parser.add_argument("--workdir", default="")
    parser.add_argument("--env", action="append", default=[])
    args = parser.parse_args(argv)

    files = []
    for spec in args.file:
        src, sep, dst = spec.partition(":")
        if not sep or not dst.startswith("/"):
            raise SystemExit(f"error: --file {spec!r}: expected SRC:/ABSOLUTE/DST")
        files.append((Path(src), dst))
    links = []
    for spec in args.symlink:
        dst, sep, target = spec.partition(":")
        if not sep or not dst.startswith("/") or not target:
            raise SystemExit(f"error: --symlink {spec!r}: expected /ABSOLUTE/DST:TARGET")
        links.append((dst, target))

    with tempfile.TemporaryDirectory(dir=args.out.parent) as tmp:
        work = Path(tmp)
        layers = list(args.layer)
        if files or links:
            layers.append(work / "files.tar")
            files_layer(layers[-1], files, links)
        if not layers:
            raise SystemExit("error: an image needs at least one --layer or --file")
        diff_ids, names = [], []
        for layer in layers:
            digest = sha256(layer)
            diff_ids.append(f"sha256:{digest}")
            names.append(f"{digest}/layer.tar")
        env = ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", *args.env]
        config = {
            "architecture": "amd64",
            "os": "linux",
            "created": "1970-01-01T00:00:00Z",
            "config": {
                "Entrypoint": args.entrypoint or None,
                "Cmd": args.cmd,
                "Env": env,
                "User": args.user,
                "WorkingDir": args.workdir,
                **({"StopSignal": args.stop_signal} if args.stop_signal else {}),
            },
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        }
        config_bytes = json.dumps(config, sort_keys=True).encode()
        config_name = hashlib.sha256(config_bytes).hexdigest() + ".json"
        manifest = [{"Config": config_name, "RepoTags": [args.tag], "Layers": names}]

        partial = args.out.with_suffix(".partial")
        with tarfile.open(partial, "w", format=tarfile.PAX_FORMAT) as out:
            for blob_name, data in (
                (config_name, config_bytes),
                ("manifest.json", json.dumps(manifest).encode()),
            ):
                info = tarfile.TarInfo(blob_name)
                info.size, info.mtime = len(data), EPOCH
                out.addfile(info, io.BytesIO(data))
            for layer, name in zip(layers, names, strict=True):
                info = tarfile.TarInfo(name)
                info.size, info.mtime = layer.stat().st_size, EPOCH
                with layer.open("rb") as f:
                    out.addfile(info, f)
        os.replace(partial, args.out)  # nothing half-written under the real name
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
