"""The attacker's view (issue 27, part 4): attempts a pod makes against the platform, run inside
the pod with its own python, each bounded in time, each answered `refused`, `allowed` or
`unreachable` with what the other side said."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

# Run inside a pod: `python -c ATTACKS CONFIG_JSON`; prints {attempt: [outcome, detail]}.
# CONFIG: kafka (bootstrap), credentials ({} or SCRAM username/password; "env" takes the pod's
# own CRYPTOPIPE_KAFKA_* ones), topics {other_trades, candles, forecasts, own_trades}, webhdfs
# (host:port), metastore (host:port), dashboard (url), secret (API path of the Sheets Secret).
ATTACKS = r"""
import json, os, socket, ssl, sys, urllib.error, urllib.request
config = json.loads(sys.argv[1])
out = {}

def kafka_settings():
    settings = {"bootstrap_servers": config["kafka"], "bootstrap_timeout_ms": 8000}
    creds = config["credentials"]
    if creds == "env":
        creds = {"username": os.environ["CRYPTOPIPE_KAFKA_USERNAME"],
                 "password": os.environ["CRYPTOPIPE_KAFKA_PASSWORD"]}
    if creds:
        settings.update(security_protocol="SASL_PLAINTEXT", sasl_mechanism="SCRAM-SHA-512",
                        sasl_plain_username=creds["username"],
                        sasl_plain_password=creds["password"])
    return settings

def verdict(error):
    # Only what Kafka answers counts as refused; anything else is an error of the attempt.
    name = type(error).__name__
    if "Authorization" in name or "Authentication" in name:
        return ["refused", name]
    if name in ("NoBrokersAvailable", "KafkaTimeoutError"):
        # The SASL handshake failed, so no broker ever answered (the same pod reaches the broker
        # on another listener: the test checks that).
        return ["refused", name + ": no authenticated session"]
    return ["error", name + ": " + str(error)[:120]]

def attempt(name, action):
    try:
        out[name] = action()
    except Exception as error:
        out[name] = verdict(error)

def read(topic):
    from kafka import KafkaConsumer, TopicPartition
    consumer = KafkaConsumer(consumer_timeout_ms=6000, **kafka_settings())
    try:
        consumer.assign([TopicPartition(topic, 0)])
        consumer.seek_to_beginning()
        got = [record for record in consumer]
        if got:
            return ["allowed", "read %d records" % len(got)]
        return ["refused", "nothing read from a topic that holds a record"]
    finally:
        consumer.close()

def write(topic):
    from kafka import KafkaProducer
    producer = KafkaProducer(enable_idempotence=False, max_block_ms=8000, **kafka_settings())
    try:
        producer.send(topic, b"forged").get(10)
        return ["allowed", "written"]
    finally:
        producer.close(timeout=5)

def list_topics():
    from kafka import KafkaConsumer
    consumer = KafkaConsumer(**kafka_settings())
    try:
        seen = sorted(consumer.topics())
    finally:
        consumer.close()
    own = {config["topics"]["own_trades"]}
    foreign = [t for t in seen if t not in own and not t.startswith("deadletter.")]
    if foreign:
        return ["allowed", "sees %d topics, %d not its own" % (len(seen), len(foreign))]
    return ["refused", "sees only its own topics (%d)" % len(seen)]

def tcp(address):
    host, port = address.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5):
        return True

def hdfs_files():
    try:
        tcp(config["webhdfs"])
    except OSError as error:
        return ["unreachable", type(error).__name__]
    url = "http://%s/webhdfs/v1/?op=LISTSTATUS&user.name=hive" % config["webhdfs"]
    with urllib.request.urlopen(url, timeout=5) as answer:
        return ["allowed", "LISTSTATUS %d" % answer.status]

def metastore():
    try:
        tcp(config["metastore"])
    except OSError as error:
        return ["unreachable", type(error).__name__]
    return ["allowed", "thrift port open, no authentication"]

def secret():
    sa = "/var/run/secrets/kubernetes.io/serviceaccount"
    if not os.path.exists(sa + "/token"):
        return ["refused", "no ServiceAccount token mounted"]
    token = open(sa + "/token").read()
    context = ssl.create_default_context(cafile=sa + "/ca.crt")
    server = "https://%s:%s" % (os.environ["KUBERNETES_SERVICE_HOST"],
                                os.environ["KUBERNETES_SERVICE_PORT"])
    request = urllib.request.Request(server + config["secret"],
                                     headers={"Authorization": "Bearer " + token})
    try:
        with urllib.request.urlopen(request, context=context, timeout=5) as answer:
            return ["allowed", "HTTP %d" % answer.status]
    except urllib.error.HTTPError as error:
        return ["refused", "HTTP %d" % error.code]

def dashboard():
    try:
        with urllib.request.urlopen(config["dashboard"], timeout=5) as answer:
            return ["allowed", "HTTP %d" % answer.status]
    except urllib.error.HTTPError as error:
        return ["refused", "HTTP %d" % error.code]
    except OSError as error:
        return ["unreachable", type(error).__name__]

topics = config["topics"]
attempt("read another pipeline's trades", lambda: read(topics["other_trades"]))
attempt("write a forged trade", lambda: write(topics["other_trades"]))
attempt("write a forged candle", lambda: write(topics["candles"]))
attempt("consume forecasts", lambda: read(topics["forecasts"]))
attempt("list topics", list_topics)
attempt("read a Hive table's files on HDFS", hdfs_files)
attempt("reach the metastore (drop a Hive table)", metastore)
attempt("read the Sheets Secret", secret)
attempt("reach the dashboard without the Ingress", dashboard)
print(json.dumps(out))
"""

ATTEMPTS = (
    "read another pipeline's trades",
    "write a forged trade",
    "write a forged candle",
    "consume forecasts",
    "list topics",
    "read a Hive table's files on HDFS",
    "reach the metastore (drop a Hive table)",
    "read the Sheets Secret",
    "reach the dashboard without the Ingress",
)


@dataclass(frozen=True)
class Position:
    """Where the attempts come from, and as whom they talk to Kafka."""

    name: str
    namespace: str
    pod: str
    config: dict[str, Any]


def command(position: Position) -> list[str]:
    """`kubectl exec` arguments that run every attempt in the position's pod."""
    return [
        "exec", f"--namespace={position.namespace}", position.pod, "--",
        "python", "-c", ATTACKS, json.dumps(position.config),
    ]  # fmt: skip


def reach_kafka(position: Position) -> list[str]:
    """`kubectl exec` arguments that print `reached` when the pod opens a TCP connection to the
    position's Kafka address."""
    host, port = position.config["kafka"].rsplit(":", 1)
    probe = (
        f"import socket; socket.create_connection(({host!r}, {port}), timeout=5).close(); "
        "print('reached')"
    )
    return ["exec", f"--namespace={position.namespace}", position.pod, "--", "python", "-c", probe]


def table(outcomes: dict[str, dict[str, list[str]]]) -> str:
    """A markdown table: one row per attempt, one column per position."""
    positions = list(outcomes)
    lines = [
        "| attempt | " + " | ".join(positions) + " |",
        "| --- | " + " | ".join("---" for _ in positions) + " |",
    ]
    for name in ATTEMPTS:
        cells = []
        for position in positions:
            outcome, detail = outcomes[position].get(name, ["not run", ""])
            cells.append(
                f"**{outcome}** ({detail})" if outcome != "refused" else f"{outcome} ({detail})"
            )
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
