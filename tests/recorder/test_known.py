"""cri_proxy/recorder/known.py: the bodies a squeezed backlog references, published by the
recorder's thread, referenced by the intake's, held while referenced and no further than a bound."""

from __future__ import annotations

from cri_proxy.recorder.known import HELD_MAX, NEEDLE, Known
from cri_proxy.recorder.wire import LastBodies

KIND = ("/runtime.v1.RuntimeService/ListContainers", False)


def test_what_is_looked_for_is_the_tap_s_last_bodies_as_data_payloads_published_once_per_change() -> None:
    memo = LastBodies()
    body = bytes(range(256)) * 20
    memo.put(KIND, body)
    known = Known()
    known.publish(memo)
    ((number, needle, payload),) = known.current
    assert payload == b"\x00" + len(body).to_bytes(4, "big") + body and needle == payload[:NEEDLE]
    current = known.current
    known.publish(memo)  # nothing put since: the very same
    assert known.current is current


def test_a_retired_body_is_held_while_referenced_then_dropped_and_none_is_referenced_past_the_bound() -> None:
    memo = LastBodies()
    old, new = b"o" * 10_000, b"n" * 10_000
    memo.put(KIND, old)
    known = Known()
    known.publish(memo)
    (number, _, payload), = known.current
    assert known.take({number: 2})
    memo.put(KIND, new)
    known.publish(memo)  # `old` is no longer looked for, but two references wait in the backlog
    assert known.held == len(payload) and known.bodies[number] == payload
    known.release([number])
    assert known.held == len(payload)
    known.release([number])
    assert known.held == 0 and number not in known.bodies and not known.refs
    assert not known.take({number: 1})  # a body retired since the intake looked it up
    (fresh, _, _), = known.current
    known.held = HELD_MAX + 1  # as if that much were held already
    assert not known.take({fresh: 1}) and not known.refs
