"""Recording: the tap rebuilds calls from relayed frames; the recorder queues them for one writer."""
