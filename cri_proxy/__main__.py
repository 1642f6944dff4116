"""`python -m cri_proxy` is the `cri-proxy` command."""

from cri_proxy.cli.app import main

main()
