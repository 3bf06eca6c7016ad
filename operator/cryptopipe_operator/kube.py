"""A thin JSON client over the kubernetes package's transport (auth from kubeconfig or pod).

Counts every request by verb for the operator's metrics (and the benchmark's write count).
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from typing import Any
from urllib.parse import urlencode

from kubernetes import client as k8s_client
from kubernetes import config as k8s_config

FIELD_MANAGER = "cryptopipe-operator"
WRITE_VERBS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# The leader Lease is bookkeeping: its renewals are not writes to the pipelines' world.
LEASES = "/apis/coordination.k8s.io/"


class ApiError(RuntimeError):
    """A non-2xx answer; `terminating` when the namespace is being deleted."""

    def __init__(self, status: int, method: str, path: str, body: str) -> None:
        try:
            message = json.loads(body).get("message", body)
        except ValueError:
            message = body
        super().__init__(f"{method} {path}: {status} {message}")
        self.status = status
        self.message = message
        self.terminating = status == 403 and "being terminated" in str(message)


def load_api_client(kubeconfig: str | None = None) -> Any:
    configuration = k8s_client.Configuration()
    if kubeconfig:
        k8s_config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=kubeconfig, client_configuration=configuration
        )
    else:
        try:
            k8s_config.load_incluster_config(  # type: ignore[no-untyped-call]
                client_configuration=configuration
            )
        except k8s_config.ConfigException:
            k8s_config.load_kube_config(  # type: ignore[no-untyped-call]
                client_configuration=configuration
            )
    configuration.connection_pool_maxsize = 32
    return k8s_client.ApiClient(configuration)


class Kube:
    def __init__(self, api_client: Any, timeout: float = 30.0) -> None:
        self.api = api_client
        self.timeout = timeout
        self.requests: Counter[str] = Counter()  # attempts, by verb
        self.succeeded_writes = 0
        self._lock = threading.Lock()

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        query: dict[str, str] | None = None,
        content_type: str = "application/json",
        timeout: float | None = None,
        raw: bool = False,
    ) -> Any:
        with self._lock:
            self.requests[method] += 1
        url = self.api.configuration.host + path + (f"?{urlencode(query)}" if query else "")
        headers = {"Accept": "application/json", "Content-Type": content_type}
        self.api.update_params_for_auth(headers, None, ["BearerToken"], path, method, body)
        response = self.api.rest_client.request(
            method, url, headers=headers, body=body, _request_timeout=timeout or self.timeout
        )
        data = response.read() if hasattr(response, "read") else response.data
        text = data.decode() if isinstance(data, bytes) else str(data or "")
        if response.status >= 400:
            raise ApiError(response.status, method, path, text)
        if method in WRITE_VERBS and not path.startswith(LEASES):
            with self._lock:
                self.succeeded_writes += 1
        if raw:
            return text
        return json.loads(text) if text else None

    def get(self, path: str) -> dict[str, Any] | None:
        try:
            result: dict[str, Any] = self.request("GET", path)
        except ApiError as error:
            if error.status == 404:
                return None
            raise
        return result

    def list(self, path: str, label_selector: str) -> list[dict[str, Any]]:
        try:
            result = self.request("GET", path, query={"labelSelector": label_selector})
        except ApiError as error:
            if error.status == 404:  # the kind is not served (a CRD is missing)
                return []
            raise
        items: list[dict[str, Any]] = result.get("items", [])
        return items

    def apply(self, path: str, manifest: dict[str, Any]) -> dict[str, Any]:
        """Server-side apply with the operator's one field manager, taking over conflicts."""
        result: dict[str, Any] = self.request(
            "PATCH",
            path,
            body=manifest,
            query={"fieldManager": FIELD_MANAGER, "force": "true"},
            content_type="application/apply-patch+yaml",
        )
        return result

    def delete(self, path: str) -> None:
        try:
            self.request("DELETE", path, body={"propagationPolicy": "Background"})
        except ApiError as error:
            if error.status != 404:
                raise

    def patch_status(self, path: str, status: dict[str, Any]) -> None:
        self.request(
            "PATCH",
            f"{path}/status",
            body={"status": status},
            content_type="application/merge-patch+json",
        )

    def writes(self) -> int:
        with self._lock:
            return self.succeeded_writes
