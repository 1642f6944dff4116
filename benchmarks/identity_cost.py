"""What one chunk of a warm `Version` call costs the client side's handler on the identity path
(proxy/reading.py: `run --faults` with no translation, each request block read for the rules and
passed on as the client sent it), apart from sockets: chunk_cost.py's chunks and stand-in
connection, through `RequestRelay.from_client` of a v1 -> v1 translator. Modes: `identity` (a
rule on another method: no rule could take a `Version` call, so a warm chunk passes unread) and
`identity-faults` (a rule that could take every `Version` call and never does: each warm block's
call is decided again).

    valgrind --tool=callgrind --instr-atstart=no .venv/bin/python benchmarks/identity_cost.py identity \\
        --chunks 3000 --callgrind      # then again with --chunks 1000: the difference / 2000 per chunk

An older checkout runs it with `env PYTHONPATH=OLD OLD/.venv/bin/python` (this script and
chunk_cost.py from the newer one).
"""

from __future__ import annotations

import argparse
import pathlib
from collections.abc import Callable

from chunk_cost import StandIn, request, timed

from cri_proxy.faults.book import FaultBook
from cri_proxy.faults.rules import parse_rules
from cri_proxy.proxy.firstcall import FirstCallRoute
from cri_proxy.proxy.policy import TranslationPolicy
from cri_proxy.proxy.routing import Upstreams
from cri_proxy.proxy.translate import Translator


def handler(mode: str, conn: StandIn) -> Callable[[bytes], None]:
    """The client side's byte handler of an identity translator whose rules `mode` names."""
    method = "Version" if mode == "identity-faults" else "PullImage"
    book = FaultBook(parse_rules([{
        "name": "rare", "match": {"method": method}, "every": 10**9,
        "action": {"error": {"code": "UNAVAILABLE", "message": "never sent"}}}], "identity_cost"))
    ups = Upstreams(pathlib.Path("runtime.sock"), translation=TranslationPolicy(lambda path: None, faults=book))
    route = FirstCallRoute(ups)
    route.conn, route.service, route.replay = conn, "runtime", None  # type: ignore[assignment]
    translator = Translator(route, ups.translation, "v1", "v1", None)  # type: ignore[arg-type]
    route.translator = translator
    return translator.requests()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=("identity", "identity-faults"))
    parser.add_argument("--chunks", type=int, default=100000, help="chunks timed, after three to warm up")
    parser.add_argument("--callgrind", action="store_true", help="under callgrind: count the timed chunks only")
    args = parser.parse_args()
    spent = timed(handler(args.mode, StandIn()), [request(2 * i + 1) for i in range(args.chunks + 3)],
                  args.callgrind)
    print(f"{args.mode}: {spent / args.chunks / 1000:.2f} us a chunk ({args.chunks} chunks)")


if __name__ == "__main__":
    main()
