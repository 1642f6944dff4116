"""Replay a recording against a runtime (`replay`), or answer from it as a stand-in runtime (`serve`).

After mitmproxy's clientplayback (re-issue recorded requests, compare what comes back) and
serverplayback (answer requests from recorded responses). Calls are read through
`cri_proxy.store.reader` as `StoredCall`s; `remap` rewrites ids in requests, `compare` diffs
responses, `runner` drives a replay, `report` writes its summary, `serve` is the stand-in
runtime; `cri_proxy.cli.replay` adds both commands.
"""
