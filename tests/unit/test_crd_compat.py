"""The check scripts/cluster runs before replacing a served CRD: what breaks stored objects or
clients is refused; additions pass. Cases built from the operator chart's own CRD."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from cryptopipe_testbed.crd_compat import problems

pytestmark = pytest.mark.unit

CRD_FILE = (
    Path(__file__).resolve().parents[2] / "charts/cryptopipe-operator/crds/cryptopipelines.yaml"
)


@pytest.fixture()
def served() -> dict[str, Any]:
    crd: dict[str, Any] = yaml.safe_load(CRD_FILE.read_text())
    return crd


def spec_schema(crd: dict[str, Any], version: int = 0) -> dict[str, Any]:
    schema: dict[str, Any] = crd["spec"]["versions"][version]["schema"]["openAPIV3Schema"]
    return schema["properties"]["spec"]  # type: ignore[no-any-return]


def test_the_same_crd_and_a_new_optional_field_are_compatible(served: dict[str, Any]) -> None:
    assert problems(served, served) == []
    proposed = copy.deepcopy(served)
    spec_schema(proposed)["properties"]["pool"] = {"type": "string", "default": "default"}
    assert problems(served, proposed) == []


def test_a_removed_field_a_new_type_and_a_newly_required_field_are_refused(
    served: dict[str, Any],
) -> None:
    proposed = copy.deepcopy(served)
    spec = spec_schema(proposed)
    del spec["properties"]["watermark"]
    spec["properties"]["intervals"] = {"type": "string"}
    spec["properties"]["pool"] = {"type": "string"}
    spec["required"] = [*spec.get("required", []), "pool"]
    found = problems(served, proposed)
    version = served["spec"]["versions"][0]["name"]
    assert f"version {version}: .spec.watermark: removed" in found
    assert f"version {version}: .spec.intervals: type array -> string" in found
    assert f"version {version}: .spec.pool: newly required" in found


def test_an_enum_that_loses_a_value_is_refused(served: dict[str, Any]) -> None:
    proposed = copy.deepcopy(served)
    kind = spec_schema(proposed)["properties"]["source"]["properties"]["kind"]
    assert "replay" in kind["enum"]
    kind["enum"] = [value for value in kind["enum"] if value != "replay"]
    assert any("enum loses ['replay']" in p for p in problems(served, proposed))
    kind["enum"] = [*kind["enum"], "replay", "coinbase"]  # wider: fine
    assert problems(served, proposed) == []


def test_removing_a_served_or_the_storage_version_and_renaming_are_refused(
    served: dict[str, Any],
) -> None:
    version = served["spec"]["versions"][0]
    renamed = copy.deepcopy(served)
    renamed["spec"]["versions"][0]["name"] = "v2"
    found = problems(served, renamed)
    assert f"version {version['name']}: removed while served" in found
    assert f"version {version['name']}: objects are stored in it, and it is gone" in found
    unserved = copy.deepcopy(served)
    unserved["spec"]["versions"][0]["served"] = False
    assert problems(served, unserved) == [f"version {version['name']}: no longer served"]
    regrouped = copy.deepcopy(served)
    regrouped["spec"]["group"] = "example.com"
    regrouped["spec"]["names"]["kind"] = "Pipeline"
    found = problems(served, regrouped)
    assert any(p.startswith("spec.group:") for p in found)
    assert any(p.startswith("spec.names.kind:") for p in found)
