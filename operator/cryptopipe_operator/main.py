"""`cryptopipe-operator`: take the Lease, then run kopf and the resync loop."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import kopf

from cryptopipe_operator.config import load_config
from cryptopipe_operator.handlers import State, register, resync_forever
from cryptopipe_operator.kube import Kube, load_api_client
from cryptopipe_operator.leader import LeaderElection
from cryptopipe_operator.metrics import Metrics, serve
from cryptopipe_operator.platform_probe import PlatformCollector, endpoints
from cryptopipe_operator.user_manager import KafkaUserManager
from cryptopipe_schemas import logs
from cryptopipe_schemas.flags import add_log_level, entry_parser

log = logging.getLogger("cryptopipe_operator")


def build_parser() -> argparse.ArgumentParser:
    parser = entry_parser(__package__, "cryptopipe-operator", __doc__)
    parser.add_argument("--config", type=Path, help="platform configuration (YAML)")
    parser.add_argument("--kubeconfig", help="default: in-cluster, then ~/.kube/config")
    parser.add_argument(
        "--namespace",
        action="append",
        default=[],
        help="watch only this namespace (repeatable); default: all namespaces",
    )
    parser.add_argument(
        "--operator-namespace",
        default=os.environ.get("POD_NAMESPACE", "default"),
        help="where the Lease lives (the chart passes the release namespace)",
    )
    parser.add_argument(
        "--lease-name", default="cryptopipe-operator", help="the Lease of the leader election"
    )
    parser.add_argument(
        "--identity",
        default=os.environ.get("POD_NAME") or socket.gethostname(),
        help="this replica's name in the Lease (POD_NAME, else the host name)",
    )
    parser.add_argument(
        "--metrics-port", type=int, default=8080, help="Prometheus metrics and health probes"
    )
    parser.add_argument("--resync-seconds", type=float, help="override the config's resync period")
    add_log_level(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logs.configure(args.log_level, quiet=("kubernetes", "urllib3"))
    config = load_config(args.config, args.operator_namespace)
    if args.resync_seconds:
        import dataclasses

        config = dataclasses.replace(config, resync_seconds=args.resync_seconds)
    api_client = load_api_client(args.kubeconfig)
    if args.kubeconfig:
        os.environ["KUBECONFIG"] = args.kubeconfig  # kopf logs in the same way
    kube = Kube(api_client)
    metrics = Metrics()
    metrics.requests = lambda: dict(kube.requests)
    metrics.writes = kube.writes
    metrics.registry.register(PlatformCollector(endpoints(config)))
    state = State(
        kube,
        config,
        metrics,
        KafkaUserManager.from_environment(config),
        namespaces=tuple(args.namespace or ()),
    )
    stop = threading.Event()
    election = LeaderElection(kube, args.operator_namespace, args.lease_name, args.identity)

    def ready() -> bool:
        # A standby is ready (it serves probes and waits); a leader once kopf has started.
        return not election.is_leader.is_set() or state.started.is_set()

    serve(args.metrics_port, metrics, alive=lambda: not stop.is_set(), ready=ready)
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    log.info(
        "waiting for the Lease %s/%s as %s", args.operator_namespace, args.lease_name, args.identity
    )
    if not election.acquire(stop):
        return 0
    metrics.set_leader(True)
    threading.Thread(target=election.keep, args=(stop, stop.set), name="lease", daemon=True).start()
    threading.Thread(target=resync_forever, args=(state, stop), name="resync", daemon=True).start()
    registry = kopf.OperatorRegistry()
    register(registry, state)

    @kopf.on.cleanup(registry=registry)
    def release_stop_flag(**_: Any) -> None:
        # kopf's own SIGTERM handler replaces ours, and before it exits it waits for its thread
        # watching `stop`: without this, a SIGTERM hangs until SIGKILL, renewing the Lease.
        stop.set()

    try:
        kopf.run(
            registry=registry,
            standalone=True,
            clusterwide=not args.namespace,
            namespaces=args.namespace,
            stop_flag=stop,
        )
    finally:
        stop.set()
        election.release()
        metrics.set_leader(False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
