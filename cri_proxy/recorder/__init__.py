"""The recorder process: rebuilds calls from the relayed bytes and writes them to SQLite.

`python -m cri_proxy.recorder.worker` runs it, started by `cri-proxy run --db`. The worker
loop feeds the tap, the tap builds recorded calls, the pipeline (keep, redact, decode, ids)
prepares them, and the one writer stores them.
"""
