"""cri-proxy: a transparent proxy between the kubelet and a container runtime's CRI sockets."""

__version__ = "0.1.0"
