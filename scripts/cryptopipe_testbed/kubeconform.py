"""kubeconform and the JSON schemas it validates against, offline (stdlib only).

- The binary: `go install github.com/yannh/kubeconform/cmd/kubeconform@<version>` into
  `~/.cache/cryptopipe/kubeconform-<version>/bin` (built with the other Kubernetes binaries).
- Built-in kinds: the JSON schemas that PyPI's `kubernetes-validate` bundles (a workspace dev
  dependency), with `$id` removed and `/api/_definitions.json#` references made relative, so
  kubeconform resolves them next to each file.
- Upstream CRDs (Strimzi, spark-operator): each served version's `openAPIV3Schema` converted
  the way kubeconform's own `openapi2jsonschema.py` does (objects closed unless they preserve
  unknown fields, int-or-string as either type), laid out as `<group>/<kind>_<version>.json`.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptopipe_testbed import kube_build, paths, process, versions

MARKER = ".complete"
# kubernetes-validate ships one folder per minor; the -strict variants close every object.
SCHEMA_KUBE_VERSION = "v" + ".".join(versions.KUBERNETES.lstrip("v").split(".")[:2]) + ".0"
BUILTIN_DIR = f"{SCHEMA_KUBE_VERSION}-local-strict"
CRD_LOCATION = "{{ .Group }}/{{ .ResourceKind }}_{{ .ResourceAPIVersion }}.json"


def bin_path() -> Path:
    return paths.component_cache("kubeconform", versions.KUBECONFORM) / "bin" / "kubeconform"


def install() -> Path:
    """Build kubeconform once (about a minute cold, seconds when the Go caches are warm)."""
    dest = paths.component_cache("kubeconform", versions.KUBECONFORM)
    if not (dest / MARKER).exists():
        shutil.rmtree(dest / "bin", ignore_errors=True)
        dest.mkdir(parents=True, exist_ok=True)
        module = f"github.com/yannh/kubeconform/cmd/kubeconform@{versions.KUBECONFORM}"
        process.run(
            [
                "go",
                "install",
                "-trimpath",
                "-ldflags",
                f"-s -w -X main.version={versions.KUBECONFORM}",
                module,
            ],
            log=paths.log_dir() / f"install-kubeconform-{versions.KUBECONFORM}.log",
            env={**kube_build.go_env(), "GOBIN": str(dest / "bin")},
        )
        (dest / MARKER).write_text("ok\n")
    return bin_path()


def _relative_refs(node: Any) -> Any:
    if isinstance(node, dict):
        out = {key: _relative_refs(value) for key, value in node.items() if key != "$id"}
        ref = out.get("$ref")
        if isinstance(ref, str) and ref.startswith("/api/_definitions.json#"):
            out["$ref"] = ref.removeprefix("/api/")
        return out
    if isinstance(node, list):
        return [_relative_refs(item) for item in node]
    return node


def builtin_schema(document: dict[str, Any]) -> dict[str, Any]:
    """One kubernetes-validate schema file as kubeconform can resolve it locally."""
    converted: dict[str, Any] = _relative_refs(document)
    return converted


def _kubernetes_validate_dir() -> tuple[Path, str]:
    spec = importlib.util.find_spec("kubernetes_validate")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            "the kubernetes-validate package is missing: run this inside the workspace (uv run)"
        )
    folder = Path(next(iter(spec.submodule_search_locations))) / "kubernetes-json-schema"
    return folder, importlib.metadata.version("kubernetes-validate")


def builtin_schemas() -> Path:
    """The built-in kinds' schemas for the test bed's Kubernetes minor, converted once."""
    source_root, package_version = _kubernetes_validate_dir()
    dest = paths.cache_root() / f"kubeconform-schemas-kubernetes-validate-{package_version}"
    if not (dest / MARKER).exists():
        staging = dest.with_name(dest.name + ".partial")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        for source in sorted((source_root / BUILTIN_DIR).glob("*.json")):
            document = json.loads(source.read_text(encoding="utf-8"))
            (staging / source.name).write_text(json.dumps(builtin_schema(document)))
        (staging / MARKER).write_text("ok\n")
        shutil.rmtree(dest, ignore_errors=True)
        staging.rename(dest)
    return dest


def _close_objects(node: Any) -> Any:
    """openapi2jsonschema's rules: closed objects, int-or-string, nested all the way down."""
    if isinstance(node, list):
        return [_close_objects(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: _close_objects(value) for key, value in node.items()}
    if out.pop("x-kubernetes-int-or-string", False):
        out.pop("type", None)
        out["type"] = ["integer", "string"]
    if (
        "properties" in out
        and "additionalProperties" not in out
        and not out.get("x-kubernetes-preserve-unknown-fields", False)
    ):
        out["additionalProperties"] = False
    return out


def crd_version_schemas(crd: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """`<group>/<kind>_<version>.json` -> JSON schema, for every served version of a CRD."""
    spec = crd["spec"]
    kind = spec["names"]["kind"].lower()
    out: dict[str, dict[str, Any]] = {}
    for version in spec["versions"]:
        if not version.get("served", True):
            continue
        schema = _close_objects(version["schema"]["openAPIV3Schema"])
        out[f"{spec['group']}/{kind}_{version['name']}.json"] = schema
    return out


def write_crd_schemas(crds: Sequence[dict[str, Any]], cache_key: str) -> Path:
    """Write the schemas of parsed CRD documents once under the cache, keyed by `cache_key`
    (the caller parses the YAML: this module stays stdlib only)."""
    dest = paths.cache_root() / f"kubeconform-crd-schemas-{cache_key}"
    if not (dest / MARKER).exists():
        staging = dest.with_name(dest.name + ".partial")
        shutil.rmtree(staging, ignore_errors=True)
        for crd in crds:
            for relative, schema in crd_version_schemas(crd).items():
                target = staging / relative
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(json.dumps(schema))
        staging.mkdir(parents=True, exist_ok=True)
        (staging / MARKER).write_text("ok\n")
        shutil.rmtree(dest, ignore_errors=True)
        staging.rename(dest)
    return dest


@dataclass(frozen=True)
class Result:
    returncode: int
    resources: list[dict[str, Any]]
    summary: dict[str, Any]
    stderr: str

    @property
    def problems(self) -> list[str]:
        return [
            f"{r.get('kind')}/{r.get('name')}: {r.get('status')}: {r.get('msg')}"
            for r in self.resources
            if r.get("status") not in ("statusValid", "statusEmpty")
        ]


def validate(manifests: str, builtin: Path, crds: Path, *, strict: bool = True) -> Result:
    """kubeconform on a multi-document YAML stream; every resource must have a schema."""
    argv = [
        str(bin_path()),
        "-kubernetes-version",
        SCHEMA_KUBE_VERSION.lstrip("v"),
        "-schema-location",
        f"{builtin}/{{{{ .ResourceKind }}}}{{{{ .KindSuffix }}}}.json",
        "-schema-location",
        f"{crds}/{CRD_LOCATION}",
        "-output",
        "json",
        "-verbose",
        "-summary",
        *(["-strict"] if strict else []),
        "-",
    ]
    done = subprocess.run(
        argv, input=manifests, capture_output=True, text=True, timeout=120, check=False
    )
    report: dict[str, Any] = json.loads(done.stdout) if done.stdout.strip() else {}
    return Result(
        done.returncode, report.get("resources", []), report.get("summary", {}), done.stderr
    )
