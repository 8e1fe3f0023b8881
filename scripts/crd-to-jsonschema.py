#!/usr/bin/env python3
"""Writes the offline JSON schemas kubeconform validates the rendered Helm chart against.

Two sources, two subcommands (scripts/install-k8s-tools.sh runs both):

``crd OUT_DIR CRD.yaml...``
    For every served version of every CustomResourceDefinition in the files, takes
    ``schema.openAPIV3Schema`` and writes ``OUT_DIR/{group}/{kind}_{version}.json`` (kind lowercased,
    the layout kubeconform's ``{{.Group}}/{{.ResourceKind}}_{{.ResourceAPIVersion}}.json`` template
    names). The schema is made strict where the API server would prune: an object that lists
    ``properties`` gets ``additionalProperties: false`` unless it says
    ``x-kubernetes-preserve-unknown-fields`` or already constrains ``additionalProperties``
    (maps); ``nullable: true`` becomes a ``null`` type. So a misspelt field in a RayService is an
    error here, not a field the API server silently drops.

``k8s OUT_DIR WHEEL VERSION``
    Extracts ``kubernetes-json-schema/v{VERSION}-local-strict/`` from a ``kubernetes-validate``
    wheel (PyPI), the built-in types' schemas with ``additionalProperties: false`` everywhere. Its
    files name ``/api/_definitions.json`` under a ``https://kubernetes.io`` ``$id``, which
    kubeconform would try to download; the copy drops the ``$id`` and refers to the sibling
    ``_definitions.json`` instead. Files are named ``{kind}[-{group}]-{version}.json``, kubeconform's
    ``{{.ResourceKind}}{{.KindSuffix}}.json``.

Needs PyYAML (``crd``) and nothing else.
"""

from __future__ import annotations

import json
import sys
import zipfile
from pathlib import Path
from typing import Any

PRESERVE = "x-kubernetes-preserve-unknown-fields"
K8S_REF_PREFIX = "/api/_definitions.json#"


def strict(node: Any) -> Any:
    """A copy of an OpenAPI v3 (CRD) schema node as strict JSON schema.

    Walks by keyword, not by key, so a field that happens to be called ``properties`` or
    ``nullable`` is left alone.
    """
    if not isinstance(node, dict):
        return node  # a boolean schema (additionalProperties: true)
    out = dict(node)
    for key in ("properties", "patternProperties"):
        if key in out:
            out[key] = {name: strict(sub) for name, sub in out[key].items()}
    for key in ("allOf", "anyOf", "oneOf"):
        if key in out:
            out[key] = [strict(sub) for sub in out[key]]
    for key in ("additionalProperties", "not"):
        if key in out:
            out[key] = strict(out[key])
    if "items" in out:
        items = out["items"]
        out["items"] = [strict(s) for s in items] if isinstance(items, list) else strict(items)
    if out.pop("nullable", False) and "type" in out:
        types = out["type"] if isinstance(out["type"], list) else [out["type"]]
        out["type"] = [*types, "null"]
    if "properties" in out and "additionalProperties" not in out and not out.get(PRESERVE):
        out["additionalProperties"] = False
    return out


def convert_crds(out_dir: Path, crd_files: list[Path]) -> list[Path]:
    import yaml  # only this subcommand needs PyYAML

    written = []
    for crd_file in crd_files:
        with crd_file.open() as f:
            docs = [d for d in yaml.safe_load_all(f) if d]
        for doc in docs:
            if doc.get("kind") != "CustomResourceDefinition":
                raise SystemExit(f"{crd_file}: not a CustomResourceDefinition: {doc.get('kind')}")
            spec = doc["spec"]
            group, kind = spec["group"], spec["names"]["kind"]
            for version in spec["versions"]:
                if not version.get("served", False):
                    continue
                schema = version.get("schema", {}).get("openAPIV3Schema")
                if schema is None:
                    raise SystemExit(f"{crd_file}: {kind} {version['name']} has no openAPIV3Schema")
                target = out_dir / group / f"{kind.lower()}_{version['name']}.json"
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(json.dumps(strict(schema), indent=1, sort_keys=True) + "\n")
                written.append(target)
    return written


def relocate_refs(node: Any) -> Any:
    """Points kubernetes-validate's absolute ``$ref``s at the sibling ``_definitions.json``."""
    if isinstance(node, list):
        return [relocate_refs(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: relocate_refs(value) for key, value in node.items()}
    ref = out.get("$ref")
    if isinstance(ref, str) and ref.startswith(K8S_REF_PREFIX):
        out["$ref"] = "_definitions.json#" + ref[len(K8S_REF_PREFIX) :]
    return out


def extract_k8s(out_dir: Path, wheel: Path, version: str) -> list[Path]:
    prefix = f"kubernetes_validate/kubernetes-json-schema/v{version}-local-strict/"
    written = []
    with zipfile.ZipFile(wheel) as zf:
        names = [n for n in zf.namelist() if n.startswith(prefix) and n.endswith(".json")]
        if not names:
            raise SystemExit(f"{wheel}: no schemas for Kubernetes {version} ({prefix})")
        out_dir.mkdir(parents=True, exist_ok=True)
        for name in names:
            schema = relocate_refs(json.loads(zf.read(name)))
            schema.pop("$id", None)  # else "_definitions.json" resolves against kubernetes.io
            target = out_dir / name[len(prefix) :]
            target.write_text(json.dumps(schema, separators=(",", ":")) + "\n")
            written.append(target)
    return written


def main(argv: list[str]) -> int:
    usage = "usage: crd-to-jsonschema.py crd OUT_DIR CRD.yaml... | k8s OUT_DIR WHEEL VERSION"
    if len(argv) >= 3 and argv[0] == "crd":
        written = convert_crds(Path(argv[1]), [Path(p) for p in argv[2:]])
    elif len(argv) == 4 and argv[0] == "k8s":
        written = extract_k8s(Path(argv[1]), Path(argv[2]), argv[3])
    else:
        print(usage, file=sys.stderr)
        return 2
    print(f"wrote {len(written)} schemas under {argv[1]}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
