"""Configuration files of the real node's daemons, rendered from a layout of its folders.

Pure functions: each takes where things live and returns the file's text. Every folder a
daemon would default to under /var, /etc, /run or /opt is moved under the run folder.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

CNI_NETWORK = "cryptopipe-testbed"


@dataclass(frozen=True)
class Layout:
    """Where the node keeps its state, all under one folder of the test bed's run folder."""

    root: Path

    @property
    def containerd(self) -> Path:
        return self.root / "containerd"

    @property
    def containerd_socket(self) -> Path:
        return self.containerd / "containerd.sock"

    @property
    def cni_conf(self) -> Path:
        return self.root / "cni" / "net.d"

    @property
    def cni_data(self) -> Path:
        return self.root / "cni" / "ipam"

    @property
    def kubelet(self) -> Path:
        return self.root / "kubelet"

    @property
    def pod_logs(self) -> Path:
        return self.root / "pod-logs"

    @property
    def local_path(self) -> Path:
        """Where local-path-provisioner creates volumes (hostPath on this machine)."""
        return self.root / "local-path"

    @property
    def config(self) -> Path:
        return self.root / "config"

    @property
    def images(self) -> Path:
        return self.root / "images"

    @property
    def record(self) -> Path:
        return self.root / "host-changes.json"


@dataclass(frozen=True)
class Network:
    node_name: str
    node_ip: str
    pod_bridge: str
    cluster_cidr: str
    cluster_dns: str
    cluster_domain: str
    kubelet_port: int
    kubelet_healthz_port: int
    proxy_healthz_port: int
    proxy_metrics_port: int


def containerd_config(layout: Layout, pause_image: str) -> str:
    cri = 'plugins."io.containerd.grpc.v1.cri"'
    state = layout.containerd / "state"
    return f"""\
version = 2
root = "{layout.containerd / "root"}"
state = "{state}"

[grpc]
  address = "{layout.containerd_socket}"

[ttrpc]
  address = "{layout.containerd / "containerd-ttrpc.sock"}"

[plugins."io.containerd.internal.v1.opt"]
  path = "{layout.containerd / "opt"}"

[{cri}]
  sandbox_image = "{pause_image}"
  # This host refuses negative OOM scores.
  restrict_oom_score_adj = true
  enable_selinux = false

[{cri}.containerd]
  snapshotter = "overlayfs"
  default_runtime_name = "runc"

[{cri}.containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"

[{cri}.containerd.runtimes.runc.options]
  SystemdCgroup = false
  Root = "{state / "runc"}"

[{cri}.cni]
  bin_dir = "/usr/lib/cni"
  conf_dir = "{layout.cni_conf}"
  max_conf_num = 1
"""


def cni_conflist(layout: Layout, network: Network, pod_cidr: str) -> str:
    """A bridge with host-local addresses from the node's pod CIDR and no masquerade: pod
    traffic is never NATed out of this machine (a rule in node_host drops it as well)."""
    conflist = {
        "cniVersion": "0.4.0",
        "name": CNI_NETWORK,
        "plugins": [
            {
                "type": "bridge",
                "bridge": network.pod_bridge,
                "isGateway": True,
                "isDefaultGateway": True,
                "ipMasq": False,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": pod_cidr}]],
                    "dataDir": str(layout.cni_data),
                },
            },
            {"type": "loopback"},
        ],
    }
    return json.dumps(conflist, indent=2) + "\n"


def kubelet_config(layout: Layout, network: Network, ca: Path, cert: Path, key: Path) -> str:
    """KubeletConfiguration (JSON is YAML): webhook authn/z against the API server, every
    folder under the run folder, and no image GC or eviction surprises on a shared disk."""
    config = {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "address": network.node_ip,
        "port": network.kubelet_port,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": network.kubelet_healthz_port,
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True},
            "x509": {"clientCAFile": str(ca)},
        },
        "authorization": {"mode": "Webhook"},
        "tlsCertFile": str(cert),
        "tlsPrivateKeyFile": str(key),
        "cgroupDriver": "cgroupfs",
        "failSwapOn": False,
        "containerRuntimeEndpoint": f"unix://{layout.containerd_socket}",
        "clusterDNS": [network.cluster_dns],
        "clusterDomain": network.cluster_domain,
        # No search domains or outside servers from the host leak into pods.
        "resolvConf": "",
        "podLogsDir": str(layout.pod_logs),
        "volumePluginDir": str(layout.kubelet / "volume-plugins"),
        # The kubelet's iptables chains are not needed by kube-proxy's iptables mode.
        "makeIPTablesUtilChains": False,
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "evictionHard": {"memory.available": "100Mi", "nodefs.available": "1%"},
        "serializeImagePulls": False,
        "registerNode": True,
        "maxPods": 110,
    }
    return json.dumps(config, indent=2) + "\n"


def kube_proxy_config(network: Network, kubeconfig: Path) -> str:
    """iptables mode bound to the node address; NodePorts only there (never on the machine's
    own interface or localhost) and the conntrack sysctls left alone (all zero)."""
    config = {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "mode": "iptables",
        "bindAddress": network.node_ip,
        "hostnameOverride": network.node_name,
        "healthzBindAddress": f"127.0.0.1:{network.proxy_healthz_port}",
        "metricsBindAddress": f"127.0.0.1:{network.proxy_metrics_port}",
        "clientConnection": {"kubeconfig": str(kubeconfig)},
        "clusterCIDR": network.cluster_cidr,
        "detectLocalMode": "ClusterCIDR",
        "nodePortAddresses": [f"{network.node_ip}/32"],
        "iptables": {"localhostNodePorts": False, "masqueradeAll": False},
        "conntrack": {
            "maxPerCore": 0,
            "min": 0,
            "tcpEstablishedTimeout": "0s",
            "tcpCloseWaitTimeout": "0s",
            "udpTimeout": "0s",
            "udpStreamTimeout": "0s",
        },
    }
    return json.dumps(config, indent=2) + "\n"
