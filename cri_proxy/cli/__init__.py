"""The `cri-proxy` command line: the only place that configures logging or maps errors to exit codes."""

from cri_proxy.cli.app import app, main

__all__ = ["app", "main"]
