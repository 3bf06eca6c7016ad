"""The whole CustomResourceDefinition: the spec schema from cryptopipe_schemas plus the status
schema, printer columns and subresources (what `scripts/generate-crd` writes into the chart)."""

from __future__ import annotations

from typing import Any

from cryptopipe_operator.status import CONDITION_TYPES
from cryptopipe_schemas.crd import NAME_RULES, crd_names, spec_schema

PHASES = ["Pending", "Provisioning", "Training", "Running", "Degraded", "Suspended", "Invalid"]


def status_schema() -> dict[str, Any]:
    condition = {
        "type": "object",
        "description": "One aspect of the pipeline's state (Kubernetes API conventions).",
        "required": ["type", "status"],
        "properties": {
            "type": {
                "type": "string",
                "description": f"One of {', '.join(CONDITION_TYPES)}.",
            },
            "status": {"type": "string", "enum": ["True", "False", "Unknown"],
                       "description": "True, False or Unknown."},
            "reason": {"type": "string", "description": "Why, as one CamelCase word."},
            "message": {"type": "string", "description": "Why, in words."},
            "lastTransitionTime": {
                "type": "string",
                "format": "date-time",
                "description": "When the status last changed.",
            },
            "observedGeneration": {
                "type": "integer",
                "format": "int64",
                "description": "The spec generation this condition describes.",
            },
        },
    }  # fmt: skip
    return {
        "type": "object",
        "description": "What the operator observed (written by the operator only).",
        "properties": {
            "observedGeneration": {
                "type": "integer",
                "format": "int64",
                "description": "The spec generation the status describes.",
            },
            "phase": {"type": "string", "enum": PHASES, "description": "Summary of the state."},
            "conditions": {
                "type": "array",
                "description": "Ready, DependenciesReady and one condition per part.",
                "items": condition,
                "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": ["type"],
            },
            "model": {
                "type": "object",
                "description": "The newest trained model version and its evaluation.",
                "properties": {
                    "version": {"type": "string", "description": "Model version."},
                    "promoted": {
                        "type": "boolean",
                        "description": "Whether it passed the promotion gate (beats persistence).",
                    },
                    "mase": {"type": "number", "description": "Walk-forward MASE."},
                    "baselineMase": {"type": "number", "description": "Best baseline's MASE."},
                },
            },
            "lastForecastTime": {
                "type": "string",
                "format": "date-time",
                "description": "Event time of the newest forecast published.",
            },
        },
    }


PRINTER_COLUMNS = [
    {"name": "Symbol", "type": "string", "jsonPath": ".spec.symbol"},
    {
        "name": "Ready",
        "type": "string",
        "jsonPath": '.status.conditions[?(@.type=="Ready")].status',
    },
    {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
    {"name": "Model", "type": "string", "jsonPath": ".status.model.version"},
    {"name": "Last forecast", "type": "date", "jsonPath": ".status.lastForecastTime"},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    {
        "name": "Reason",
        "type": "string",
        "priority": 1,
        "jsonPath": '.status.conditions[?(@.type=="Ready")].reason',
    },
    {"name": "Pool", "type": "string", "priority": 1, "jsonPath": ".spec.pool"},
    {"name": "Isolation", "type": "string", "priority": 1, "jsonPath": ".spec.isolation"},
]


def crd_manifest() -> dict[str, Any]:
    names = crd_names()
    spec = spec_schema()
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{names['plural']}.{names['group']}",
            "labels": {
                "app.kubernetes.io/name": "cryptopipe",
                "app.kubernetes.io/part-of": "cryptopipe",
            },
        },
        "spec": {
            "group": names["group"],
            "scope": "Namespaced",
            "names": {
                "kind": names["kind"],
                "listKind": f"{names['kind']}List",
                "plural": names["plural"],
                "singular": names["kind"].lower(),
                "shortNames": names["shortNames"],
                "categories": names["categories"],
            },
            "versions": [
                {
                    "name": names["version"],
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": PRINTER_COLUMNS,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "description": "A real-time crypto pipeline for one symbol: trades "
                            "into Kafka, candles by Spark, an LSTM forecast and a dashboard.",
                            "required": ["spec"],
                            "x-kubernetes-validations": NAME_RULES,
                            "properties": {
                                "apiVersion": {"type": "string"},
                                "kind": {"type": "string"},
                                "metadata": {"type": "object"},
                                "spec": spec,
                                "status": status_schema(),
                            },
                        }
                    },
                }
            ],
        },
    }
