"""Pure parts of the test bed: configuration it renders and the order it starts things in."""

from __future__ import annotations

import struct
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from cryptopipe_testbed import maven, thrift_probe
from cryptopipe_testbed.components import with_requirements
from cryptopipe_testbed.components.hdfs import hdfs_site
from cryptopipe_testbed.components.kafka import _cluster_id, server_properties
from cryptopipe_testbed.hadoop_conf import site_xml

pytestmark = pytest.mark.unit


def _properties(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if line)


def test_kafka_never_creates_topics_and_only_the_pods_scram_listener_leaves_loopback(
    tmp_path: Path,
) -> None:
    settings = _properties(server_properties(tmp_path))
    assert settings["auto.create.topics.enable"] == "false"
    listeners = dict(item.split("://") for item in settings["listeners"].split(","))
    assert listeners == {
        "PLAINTEXT": "127.0.0.1:19092",
        "CONTROLLER": "127.0.0.1:19093",
        "SCRAM": "127.0.0.1:19095",
        "PODS_SCRAM": "0.0.0.0:19096",
    }
    advertised = dict(item.split("://") for item in settings["advertised.listeners"].split(","))
    assert advertised == {
        "PLAINTEXT": "127.0.0.1:19092",
        "SCRAM": "127.0.0.1:19095",
        "PODS_SCRAM": "10.242.0.1:19096",
    }
    assert settings["process.roles"] == "broker,controller"
    assert settings["log.dirs"] == str(tmp_path)


def test_kafka_holds_only_the_scram_listeners_to_acls(tmp_path: Path) -> None:
    settings = _properties(server_properties(tmp_path))
    protocols = dict(
        item.split(":") for item in settings["listener.security.protocol.map"].split(",")
    )
    assert protocols["SCRAM"] == protocols["PODS_SCRAM"] == "SASL_PLAINTEXT"
    assert protocols["PLAINTEXT"] == "PLAINTEXT"
    assert "PODS" not in protocols  # pods get no unauthenticated listener
    assert settings["authorizer.class.name"].endswith("StandardAuthorizer")
    assert settings["super.users"] == "User:ANONYMOUS;User:cryptopipe-admin"
    # Without a login module per SASL listener and mechanism the broker refuses to start.
    for listener in ("scram", "pods_scram"):
        for mechanism in ("scram-sha-512", "scram-sha-256"):
            assert (
                "ScramLoginModule"
                in settings[f"listener.name.{listener}.{mechanism}.sasl.jaas.config"]
            )


def test_kraft_cluster_id_is_22_urlsafe_characters() -> None:
    ids = {_cluster_id() for _ in range(20)}
    assert len(ids) == 20
    assert all(len(i) == 22 and "=" not in i and "+" not in i and "/" not in i for i in ids)


def test_requirements_come_first_and_only_what_is_asked() -> None:
    names = [component.name for component in with_requirements(["hive"])]
    assert set(names) == {"hive", "postgres", "hdfs"}
    assert names.index("hive") > names.index("postgres")
    assert names.index("hive") > names.index("hdfs")
    assert [c.name for c in with_requirements(["kafka"])] == ["kafka"]


def test_unknown_component_is_a_clear_error() -> None:
    with pytest.raises(SystemExit, match="unknown component"):
        with_requirements(["zookeeper"])


def test_site_xml_round_trips_and_escapes(tmp_path: Path) -> None:
    properties = {"a.b": "x<y&z", **hdfs_site(tmp_path)}
    root = ET.fromstring(site_xml(properties))
    parsed = {p.findtext("name"): p.findtext("value") for p in root.iter("property")}
    assert parsed == properties
    assert parsed["dfs.datanode.hostname"] == "127.0.0.1"


def test_maven_fingerprint_follows_pom_and_arguments() -> None:
    base = maven._fingerprint("kafka.xml", {"kafka.version": "4.1.2"}, [])
    assert base == maven._fingerprint("kafka.xml", {"kafka.version": "4.1.2"}, [])
    assert base != maven._fingerprint("kafka.xml", {"kafka.version": "4.1.1"}, [])
    assert base != maven._fingerprint("hadoop.xml", {"kafka.version": "4.1.2"}, [])


def test_thrift_call_message_is_strict_binary_protocol() -> None:
    message = thrift_probe._call_message("get_all_databases", seqid=7)
    version, name_length = struct.unpack(">II", message[:8])
    assert version == 0x80010001
    assert message[8 : 8 + name_length] == b"get_all_databases"
    assert struct.unpack(">i", message[8 + name_length : 12 + name_length])[0] == 7
    assert message[-1] == 0  # empty argument struct
