"""The real node's add-ons as Kubernetes objects: CoreDNS and local-path-provisioner.

Pure builders (arguments in, a list of manifests out), applied by components/node.py with
`kubectl apply --server-side`. Both run from local images (`imagePullPolicy: Never`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

Manifest = dict[str, Any]

DNS_PORT = 1053  # unprivileged inside the pod; the kube-dns Service maps 53 to it
DNS_HEALTH_PORT = 8080
DNS_READY_PORT = 8181
LOCAL_PATH_NAMESPACE = "local-path-storage"
LOCAL_PATH_ACCOUNT = "local-path-provisioner-service-account"
STORAGE_CLASS = "local-path"
PROVISIONER = "rancher.io/local-path"
NON_ROOT = {
    "runAsNonRoot": True,
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "capabilities": {"drop": ["ALL"]},
}


def _meta(name: str, namespace: str | None = None, **labels: str) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if namespace is not None:
        meta["namespace"] = namespace
    if labels:
        meta["labels"] = dict(labels)
    return meta


def _cluster_role_with_binding(
    name: str, rules: list[dict[str, Any]], account: str, namespace: str
) -> list[Manifest]:
    return [
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": _meta(name),
            "rules": rules,
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": _meta(name),
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": name,
            },
            "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": namespace}],
        },
    ]


def corefile(domain: str) -> str:
    """Cluster names only: no `forward` (no outside DNS here) and so no `loop` either."""
    return f"""\
.:{DNS_PORT} {{
    errors
    health :{DNS_HEALTH_PORT}
    ready :{DNS_READY_PORT}
    kubernetes {domain} in-addr.arpa ip6.arpa {{
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
        ttl 30
    }}
    cache 30
    loadbalance
}}
"""


def coredns(image: str, service_ip: str, domain: str) -> list[Manifest]:
    namespace = "kube-system"
    labels = {"k8s-app": "kube-dns"}
    rules = [
        {
            "apiGroups": [""],
            "resources": ["endpoints", "services", "pods", "namespaces"],
            "verbs": ["list", "watch"],
        },
        {
            "apiGroups": ["discovery.k8s.io"],
            "resources": ["endpointslices"],
            "verbs": ["list", "watch"],
        },
    ]
    container = {
        "name": "coredns",
        "image": image,
        "imagePullPolicy": "Never",
        "args": ["-conf", "/etc/coredns/Corefile"],
        "ports": [
            {"name": "dns", "containerPort": DNS_PORT, "protocol": "UDP"},
            {"name": "dns-tcp", "containerPort": DNS_PORT, "protocol": "TCP"},
        ],
        "volumeMounts": [{"name": "config", "mountPath": "/etc/coredns", "readOnly": True}],
        "readinessProbe": {
            "httpGet": {"path": "/ready", "port": DNS_READY_PORT},
            "periodSeconds": 2,
        },
        "livenessProbe": {"httpGet": {"path": "/health", "port": DNS_HEALTH_PORT}},
        "resources": {"requests": {"cpu": "10m", "memory": "32Mi"}, "limits": {"memory": "128Mi"}},
        "securityContext": NON_ROOT,
    }
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _meta("coredns", namespace)},
        *_cluster_role_with_binding("cryptopipe-testbed:coredns", rules, "coredns", namespace),
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": _meta("coredns", namespace),
            "data": {"Corefile": corefile(domain)},
        },
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": _meta("coredns", namespace, **labels),
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "serviceAccountName": "coredns",
                        "priorityClassName": "system-cluster-critical",
                        "dnsPolicy": "Default",
                        "containers": [container],
                        "volumes": [{"name": "config", "configMap": {"name": "coredns"}}],
                    },
                },
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": _meta("kube-dns", namespace, **labels),
            "spec": {
                "clusterIP": service_ip,
                "selector": labels,
                "ports": [
                    {"name": "dns", "port": 53, "targetPort": DNS_PORT, "protocol": "UDP"},
                    {"name": "dns-tcp", "port": 53, "targetPort": DNS_PORT, "protocol": "TCP"},
                ],
            },
        },
    ]


def _helper_pod(helper_image: str) -> str:
    """The pod the provisioner runs to create and remove volume folders (as root: the
    folders are on the host)."""
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "helper-pod"},
        "spec": {
            "priorityClassName": "system-node-critical",
            "containers": [
                {
                    "name": "helper-pod",
                    "image": helper_image,
                    "imagePullPolicy": "Never",
                    "securityContext": {"runAsUser": 0, "runAsNonRoot": False},
                }
            ],
        },
    }
    return json.dumps(pod, indent=2)


def local_path(image: str, helper_image: str, volumes: Path) -> list[Manifest]:
    namespace = LOCAL_PATH_NAMESPACE
    labels = {"app": "local-path-provisioner"}
    config = {
        "nodePathMap": [{"node": "DEFAULT_PATH_FOR_NON_LISTED_NODES", "paths": [str(volumes)]}]
    }
    rules = [
        {
            "apiGroups": [""],
            "resources": ["nodes", "persistentvolumeclaims", "configmaps", "pods", "pods/log"],
            "verbs": ["get", "list", "watch"],
        },
        {
            "apiGroups": [""],
            "resources": ["persistentvolumes"],
            "verbs": ["get", "list", "watch", "create", "patch", "update", "delete"],
        },
        {"apiGroups": [""], "resources": ["events"], "verbs": ["create", "patch"]},
        {
            "apiGroups": ["storage.k8s.io"],
            "resources": ["storageclasses"],
            "verbs": ["get", "list", "watch"],
        },
    ]
    container = {
        "name": "local-path-provisioner",
        "image": image,
        "imagePullPolicy": "Never",
        "args": [
            "--debug",
            "start",
            "--config=/etc/config/config.json",
            f"--helper-image={helper_image}",
            f"--service-account-name={LOCAL_PATH_ACCOUNT}",
        ],
        "env": [
            {
                "name": "POD_NAMESPACE",
                "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}},
            },
            {"name": "CONFIG_MOUNT_PATH", "value": "/etc/config/"},
        ],
        "volumeMounts": [{"name": "config", "mountPath": "/etc/config/", "readOnly": True}],
        "resources": {"requests": {"cpu": "10m", "memory": "32Mi"}, "limits": {"memory": "128Mi"}},
        "securityContext": NON_ROOT,
    }
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": _meta(namespace)},
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": _meta(LOCAL_PATH_ACCOUNT, namespace),
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": _meta("local-path-provisioner", namespace),
            "rules": [
                {
                    "apiGroups": [""],
                    "resources": ["pods"],
                    "verbs": ["get", "list", "watch", "create", "patch", "update", "delete"],
                }
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": _meta("local-path-provisioner", namespace),
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "Role",
                "name": "local-path-provisioner",
            },
            "subjects": [
                {"kind": "ServiceAccount", "name": LOCAL_PATH_ACCOUNT, "namespace": namespace}
            ],
        },
        *_cluster_role_with_binding(
            "cryptopipe-testbed:local-path-provisioner", rules, LOCAL_PATH_ACCOUNT, namespace
        ),
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": _meta("local-path-config", namespace),
            "data": {
                "config.json": json.dumps(config, indent=2),
                "setup": '#!/bin/sh\nset -eu\nmkdir -m 0777 -p "$VOL_DIR"\n',
                "teardown": '#!/bin/sh\nset -eu\nrm -rf "$VOL_DIR"\n',
                "helperPod.yaml": _helper_pod(helper_image),
            },
        },
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": _meta("local-path-provisioner", namespace, **labels),
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "serviceAccountName": LOCAL_PATH_ACCOUNT,
                        "containers": [container],
                        "volumes": [{"name": "config", "configMap": {"name": "local-path-config"}}],
                    },
                },
            },
        },
        {
            "apiVersion": "storage.k8s.io/v1",
            "kind": "StorageClass",
            "metadata": {
                "name": STORAGE_CLASS,
                "annotations": {"storageclass.kubernetes.io/is-default-class": "true"},
            },
            "provisioner": PROVISIONER,
            "volumeBindingMode": "WaitForFirstConsumer",
            "reclaimPolicy": "Delete",
        },
    ]
