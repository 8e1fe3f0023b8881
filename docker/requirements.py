"""Print raytrader's requirements from ``pyproject.toml``: the core dependencies plus the named
extras, one per line, for ``pip install -c requirements/constraints.txt -r -``.

    python docker/requirements.py pyproject.toml stack,search   # what the image installs
    python docker/requirements.py pyproject.toml stack,train    # with RLlib and torch

An extra may name another of the project's own (``raytrader[search]``); it is expanded here, as
pip would, since the project itself is not installed from an index.

The image installs these before it copies the source, so a source change rebuilds only the last
layers (see Dockerfile). Standard library only: it runs in the base image before anything else.
"""

from __future__ import annotations

import sys
import tomllib


def requirements(pyproject: str, extras: str) -> list[str]:
    with open(pyproject, "rb") as f:
        project = tomllib.load(f)["project"]
    optional: dict[str, list[str]] = project.get("optional-dependencies", {})
    own = project["name"] + "["
    out = list(project["dependencies"])
    todo = [e.strip() for e in extras.split(",") if e.strip()]
    seen: set[str] = set()
    while todo:
        extra = todo.pop(0)
        if extra in seen:
            continue
        if extra not in optional:
            raise SystemExit(f"unknown extra {extra!r}; pyproject.toml has {sorted(optional)}")
        seen.add(extra)
        for requirement in optional[extra]:
            if requirement.startswith(own):  # raytrader[search]: that extra's requirements
                todo += requirement.removeprefix(own).rstrip("]").split(",")
            elif requirement not in out:
                out.append(requirement)
    return out


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit("usage: requirements.py PYPROJECT EXTRAS")
    print("\n".join(requirements(sys.argv[1], sys.argv[2])))
