"""Pinned versions of every test bed component, in one place.

Kafka 4.1.2: the newest broker verified with both of its clients here: kafka-python 3.0.12
(which speaks the Kafka 4 protocol baseline, KIP-896) and the kafka-clients 3.9.1 that
Spark 4.1.1's `spark-sql-kafka-0-10` connector brings. Kafka 4.2+ brokers start as well, but
4.1 is the line both clients were tested against upstream.
Spark 4.1.1: the newest whose Kafka and Avro connector jars Maven Central serves completely.
Hive metastore 3.1.3: Spark's built-in Hive client (2.3.10) reads it with no extra jars;
a 4.x metastore needs a separate 88 MB Hive 4 client jar set inside Spark.
"""

from __future__ import annotations

KAFKA = "4.1.2"
LOG4J = "2.24.3"
SPARK = "4.1.1"
SCALA_BINARY = "2.13"
HADOOP = "3.4.2"
HIVE_METASTORE = "3.1.3"
POSTGRES_JDBC = "42.7.4"
POSTGRES_MAJOR = "15"
KUBERNETES = "v1.34.12"
ETCD = "v3.6.16"
KWOK = "v0.8.0"
HELM = "v3.22.0"
KUBECONFORM = "v0.8.0"
CRICTL = "v1.37.0"
COREDNS = "v1.12.4"
LOCAL_PATH_PROVISIONER = "v0.0.30"
# The Debian release whose containerd (1.6), runc, CNI plugins and static binaries the node uses.
DEBIAN_SUITE = "bookworm"
APICURIO_REGISTRY = "3.3.3"
# Kubeflow spark-operator: its CRDs (upstream_crds) and its controller (components/spark_operator).
SPARK_OPERATOR = "v2.5.0"
# kind: the newest whose default Kubernetes (1.34) runs on a cgroup v1 host (0.33 defaults to 1.37).
KIND = "v0.30.0"
# Prometheus 3.16.0 (its Go module numbers v3.x as v0.3xx) for promtool and the server that
# scrapes the test bed's pods; the Prometheus Operator's CRDs (PodMonitor, PrometheusRule) from
# its Go module's example/prometheus-operator-crd (v0.95 is not on the proxy here).
PROMETHEUS = "v0.316.0"
PROMETHEUS_OPERATOR = "v0.94.0"
