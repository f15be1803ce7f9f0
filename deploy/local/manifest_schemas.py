"""JSON schemas that kubeconform reads from local files (deploy/local/manifest-tools.sh).

  k8s WHEEL VERSION OUT   Kubernetes' own kinds, from the kubernetes-validate wheel: its
                          `vX.Y.Z-local[-strict]` folders (one file a kind, `$ref`s into a
                          shared `_definitions.json`), rewritten so that every `$ref` names
                          the file beside it instead of kubernetes.io (which kubeconform
                          would try to download).
  crd OUT CRD.yaml...     A CustomResourceDefinition's openAPIV3Schema per served version,
                          as OUT/{group}/{kind}_{version}.json (kind lowercased), strict:
                          objects that list their properties take no others (as kubectl's
                          own validation), unless the CRD preserves unknown fields there.
  compose SCHEMA FILE     FILE (YAML) against the compose-spec JSON schema (needs jsonschema).

Written to a temporary folder first and moved into place whole, so an interrupted run leaves
nothing half made.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import yaml

WHEEL_ROOT = "kubernetes_validate/kubernetes-json-schema/"
REMOTE_DEFINITIONS = "/api/_definitions.json#"


def _localise(node: Any, definitions_ref: str) -> Any:
    """The schema with `$ref`s into kubernetes.io's `_definitions.json` made relative."""
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key == "$id":
                continue  # the file's own location is its base: refs resolve beside it
            if key == "$ref" and isinstance(value, str) and value.startswith(REMOTE_DEFINITIONS):
                value = definitions_ref + value[len(REMOTE_DEFINITIONS) :]
            out[key] = _localise(value, definitions_ref)
        return out
    if isinstance(node, list):
        return [_localise(item, definitions_ref) for item in node]
    return node


def kubernetes(wheel: Path, version: str, out: Path) -> int:
    written = 0
    with zipfile.ZipFile(wheel) as archive, _staging(out) as staging:
        for suffix in ("-local", "-local-strict"):
            prefix = f"{WHEEL_ROOT}v{version}{suffix}/"
            target = staging / f"v{version}{suffix}"
            target.mkdir()
            for name in archive.namelist():
                if not name.startswith(prefix) or not name.endswith(".json"):
                    continue
                filename = name[len(prefix) :]
                ref = "#" if filename == "_definitions.json" else "_definitions.json#"
                schema = _localise(json.loads(archive.read(name)), ref)
                (target / filename).write_text(json.dumps(schema))
                written += 1
    if not written:
        raise SystemExit(f"{wheel} has no schemas for Kubernetes v{version}")
    return written


def _strict(node: Any) -> Any:
    """openAPIV3Schema as JSON schema: closed objects, nullable and int-or-string spelled out."""
    if isinstance(node, list):
        return [_strict(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: _strict(value) for key, value in node.items()}
    if (
        "properties" in out
        and "additionalProperties" not in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    if out.pop("x-kubernetes-int-or-string", False):
        out.pop("type", None)
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if out.pop("nullable", False) and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
    return out


def crds(out: Path, files: list[Path]) -> int:
    written = 0
    with _staging(out) as staging:
        for path in files:
            for doc in yaml.safe_load_all(path.read_text()):
                if not doc or doc.get("kind") != "CustomResourceDefinition":
                    continue
                spec = doc["spec"]
                kind = spec["names"]["kind"].lower()
                folder = staging / spec["group"]
                folder.mkdir(exist_ok=True)
                for version in spec["versions"]:
                    schema = _strict(version["schema"]["openAPIV3Schema"])
                    schema["$schema"] = "http://json-schema.org/draft-04/schema#"
                    (folder / f"{kind}_{version['name']}.json").write_text(json.dumps(schema))
                    written += 1
    if not written:
        raise SystemExit(f"no CustomResourceDefinition in {', '.join(map(str, files))}")
    return written


class _staging:
    """A fresh folder beside `out` that replaces `out` when the block ends without error."""

    def __init__(self, out: Path) -> None:
        self.out = out

    def __enter__(self) -> Path:
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = Path(tempfile.mkdtemp(prefix=f".{self.out.name}.", dir=self.out.parent))
        return self.tmp

    def __exit__(self, exc_type: object, *_: object) -> None:
        if exc_type is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            return
        shutil.rmtree(self.out, ignore_errors=True)
        self.tmp.rename(self.out)


def compose(schema_file: Path, compose_file: Path) -> int:
    import jsonschema

    schema = json.loads(schema_file.read_text())
    validator = jsonschema.Draft7Validator(schema)
    errors = sorted(validator.iter_errors(yaml.safe_load(compose_file.read_text())), key=str)
    for error in errors:
        where = "/".join(map(str, error.absolute_path)) or "(top)"
        print(f"{compose_file}: {where}: {error.message}", file=sys.stderr)
    if errors:
        raise SystemExit(1)
    print(f"{compose_file}: valid", file=sys.stderr)
    return 0


def main(argv: list[str]) -> None:
    if len(argv) == 3 and argv[0] == "compose":
        compose(Path(argv[1]), Path(argv[2]))
        return
    if len(argv) == 4 and argv[0] == "k8s":
        count = kubernetes(Path(argv[1]), argv[2].removeprefix("v"), Path(argv[3]))
    elif len(argv) >= 3 and argv[0] == "crd":
        count = crds(Path(argv[1]), [Path(arg) for arg in argv[2:]])
    else:
        raise SystemExit(__doc__)
    print(f"{count} schemas written", file=sys.stderr)


if __name__ == "__main__":
    main(sys.argv[1:])
