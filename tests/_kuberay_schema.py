"""Offline validation of KubeRay manifests against the CRDs' openAPIV3Schema.

The CRDs are read in place (gzip-compressed YAML) from ``../shared/schemas/kuberay`` beside the
checkout. Kubernetes' structural-schema extensions are turned into plain JSON Schema:

* ``x-kubernetes-int-or-string: true``  -> ``anyOf: [integer, string]`` (other keywords kept);
* ``nullable: true``                    -> ``null`` added to ``type``;
* objects that list ``properties`` reject unknown fields (``additionalProperties: false``) unless
  they carry ``x-kubernetes-preserve-unknown-fields`` -- the API server would prune such fields
  silently, and ``kubectl apply`` (strict field validation) rejects them, so a typo'd key fails;
* the remaining ``x-kubernetes-*`` keys are dropped. CEL rules (``x-kubernetes-validations``)
  cannot be evaluated offline and are not checked.
"""

from __future__ import annotations

import gzip
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import yaml

SCHEMA_DIR = Path(__file__).resolve().parents[2] / "shared" / "schemas" / "kuberay"
CRD_FILES = {
    "RayCluster": "ray.io_rayclusters.yaml.gz",
    "RayJob": "ray.io_rayjobs.yaml.gz",
}


def to_json_schema(node: Any) -> Any:
    """Return a plain JSON Schema equivalent of one OpenAPI v3 (Kubernetes structural) schema."""
    if isinstance(node, list):
        return [to_json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {
        key: to_json_schema(value)
        for key, value in node.items()
        if not key.startswith("x-kubernetes-") and key != "nullable"
    }
    if node.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if node.get("nullable") and "type" in out:
        types = out["type"] if isinstance(out["type"], list) else [out["type"]]
        out["type"] = [*types, "null"]
    if (
        "properties" in node
        and "additionalProperties" not in node
        and not node.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the CRDs are large; libyaml is ~5x faster


def crd_schema(kind: str, version: str = "v1") -> dict[str, Any]:
    """The converted openAPIV3Schema of ``kind`` (``RayCluster`` or ``RayJob``) at ``version``."""
    return _crd_schema(kind, version)


@cache
def _crd_schema(kind: str, version: str) -> dict[str, Any]:
    if kind not in CRD_FILES:
        raise KeyError(f"no CRD for kind {kind!r}; available: {', '.join(sorted(CRD_FILES))}")
    with gzip.open(SCHEMA_DIR / CRD_FILES[kind], "rt", encoding="utf-8") as f:
        crd = yaml.load(f, Loader=_Loader)
    for entry in crd["spec"]["versions"]:
        if entry["name"] == version:
            return to_json_schema(entry["schema"]["openAPIV3Schema"])
    raise KeyError(f"CRD {kind} has no version {version!r}")


def validate_manifest(doc: dict[str, Any]) -> None:
    """Raise ``jsonschema.ValidationError`` unless ``doc`` fits its kind's CRD schema."""
    group, _, version = str(doc.get("apiVersion", "")).partition("/")
    if group != "ray.io" or not version:
        raise ValueError(f"not a ray.io object: apiVersion={doc.get('apiVersion')!r}")
    schema = crd_schema(doc["kind"], version)
    jsonschema.Draft7Validator(schema).validate(doc)
