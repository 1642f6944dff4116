"""The lean tap (cri_proxy/recorder/leantap.py, leancalls.py): fed the same bytes as the full
tap in lean mode (the server's through the relay's lean walker), read in the same order however
the reads cut them, it makes the same calls, the same metrics and the same calls in flight, while
the plain calls of a connection are counted without being built."""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable
from typing import Any

import pytest
from hpack import Encoder
from hyperframe import frame as hf
from prometheus_client import generate_latest

from cri_proxy.model.call import RecordedCall
from cri_proxy.model.options import TelemetryConfig
from cri_proxy.model.sink import MemorySink
from cri_proxy.proxy.lean import LeanWalker
from cri_proxy.proxy.tap import ConnectionInfo
from cri_proxy.recorder.leancalls import LeanCall
from cri_proxy.recorder.leantap import MAX_BLOCKS, LeanConnection, LeanTap
from cri_proxy.recorder.tap import ConnectionRecorder, RecordingTap
from cri_proxy.recorder.telemetry import Telemetry, open_calls
from tests.helpers.scrape import samples
from tests.helpers.tapwire import prefixed

V1 = "/runtime.v1.RuntimeService/"
INFO = ConnectionInfo(7, 42, 0, "unix:///rt.sock", 0, "kubelet", "/usr/bin/kubelet")
Event = tuple[bool, bytes]  # (from the client, a read's bytes)


class Scenario:
    """Both directions of one connection, frame by frame, in the order they were relayed."""

    def __init__(self) -> None:
        self.frames: list[Event] = []
        self.client_enc, self.server_enc = Encoder(), Encoder()

    def c(self, *frames: Any) -> None:
        self.frames.extend((True, bytes(f.serialize())) for f in frames)

    def s(self, *frames: Any) -> None:
        self.frames.extend((False, bytes(f.serialize())) for f in frames)

    def ask(self, sid: int, method: str, body: bytes = prefixed(b"q"), cuts: int = 1, pad: int = 0,
            extra: tuple[tuple[Any, ...], ...] = ()) -> None:
        path = method if method.startswith("/") else V1 + method
        block = self.client_enc.encode([(":method", "POST"), (":path", path),
                                        ("content-type", "application/grpc"), *extra])
        self.c(hf.HeadersFrame(sid, data=block, flags=["END_HEADERS"]), *data(sid, body, cuts, pad, end=True))

    def answer(self, sid: int, body: bytes = prefixed(b"a"), status: str | None = "0", cuts: int = 1, pad: int = 0,
               http: str = "200", message: str | None = None, only: bool = False) -> None:
        trailers = [("grpc-status", status)] if status is not None else []
        if message is not None:
            trailers.append(("grpc-message", message))
        if only:
            block = self.server_enc.encode([(":status", http), ("content-type", "application/grpc"), *trailers])
            self.s(hf.HeadersFrame(sid, data=block, flags=["END_HEADERS", "END_STREAM"]))
            return
        fields = [(":status", http), ("content-type", "application/grpc")]
        head = hf.HeadersFrame(sid, data=self.server_enc.encode(fields), flags=["END_HEADERS"])
        self.s(head, *data(sid, body, cuts, pad, end=False))
        self.s(hf.HeadersFrame(sid, data=self.server_enc.encode(trailers), flags=["END_HEADERS", "END_STREAM"]))

    def unary(self, sid: int, method: str = "Version", **answer: Any) -> None:
        self.ask(sid, method)
        self.answer(sid, **answer)


def data(sid: int, stream: bytes, cuts: int, pad: int, end: bool) -> list[hf.DataFrame]:
    """`stream` in `cuts` DATA frames cut anywhere (gRPC prefixes too)."""
    rng = random.Random(sid)
    points = sorted({0, len(stream), *(rng.randrange(len(stream) + 1) for _ in range(cuts - 1))})
    frames = []
    for i, (a, b) in enumerate(itertools.pairwise(points)):
        flags = (["END_STREAM"] if end and i == len(points) - 2 else []) + (["PADDED"] if pad else [])
        frames.append(hf.DataFrame(sid, stream[a:b], flags=flags, pad_length=pad))
    return frames or [hf.DataFrame(sid, b"", flags=["END_STREAM"] if end else [])]


def plain() -> Scenario:
    """A kubelet's steady traffic: small unary calls, a larger reply, errors, a stream."""
    s = Scenario()
    s.c(hf.SettingsFrame(0, settings={hf.SettingsFrame.HEADER_TABLE_SIZE: 4096}),
        hf.WindowUpdateFrame(0, window_increment=9))
    s.s(hf.SettingsFrame(0), hf.SettingsFrame(0, flags=["ACK"]))
    s.c(hf.SettingsFrame(0, flags=["ACK"]))
    for sid in range(1, 40, 2):
        s.unary(sid, ("Version", "ListContainers", "ContainerStatus")[sid % 3],
                body=prefixed(bytes(sid * 97 % 3000)), status=("0", "0", "5", "0")[sid % 4])
        if sid % 7 == 0:
            s.s(hf.PingFrame(0, opaque_data=b"12345678"))
            s.c(hf.PingFrame(0, flags=["ACK"], opaque_data=b"12345678"), hf.WindowUpdateFrame(sid, window_increment=99))
    s.ask(41, "GetContainerEvents")
    s.answer(41, body=b"".join(prefixed(bytes(n)) for n in (300, 0, 2000, 40)), cuts=1)
    s.unary(43, "ListContainerStats", body=prefixed(bytes(200_000)), cuts=7)
    return s


def odd() -> Scenario:
    """Every frame and shape the lean tap leaves to the full tap, between plain calls."""
    s = plain()
    s.ask(101, "Version", body=prefixed(b"ab") + prefixed(b"") + prefixed(b"cde"), cuts=4)  # cut requests
    s.answer(101, pad=3)
    s.unary(103, "/not.a.Cri/Method")  # a path the table lacks
    s.unary(105, status="abc")  # unreadable grpc-status
    s.unary(107, status=None)  # no grpc-status
    s.unary(109, http="503", status="14", message="no%20runtime")
    s.ask(111, "Version")
    s.answer(111, only=True, status="12", message="unimplemented")  # trailers-only
    s.ask(113, "ListImages")
    s.c(hf.RstStreamFrame(113, error_code=8))  # the client gives up
    s.ask(115, "Version")
    s.s(hf.HeadersFrame(115, data=s.server_enc.encode([(":status", "200")]), flags=["END_HEADERS"]),
        hf.DataFrame(115, prefixed(b"z"), flags=["END_STREAM"]))  # ended without trailers
    block = s.client_enc.encode([(":method", "POST"), (":path", V1 + "PodSandboxStatus")])
    s.c(hf.HeadersFrame(117, data=block[:4]), hf.ContinuationFrame(117, data=block[4:], flags=["END_HEADERS"]))
    s.c(hf.DataFrame(117, prefixed(b"p"), flags=["END_STREAM"]))
    s.answer(117)
    s.c(hf.PriorityFrame(119, depends_on=0, stream_weight=9))
    s.frames.append((True, bytes([0, 0, 1, 0xA, 0, 0, 0, 0, 0]) + b"?"))  # a frame type HTTP/2 does not define
    s.c(hf.HeadersFrame(119, data=s.client_enc.encode([(":method", "POST"), (":path", V1 + "Version")]),
                     flags=["END_HEADERS", "PRIORITY"], depends_on=0, stream_weight=3),
        hf.DataFrame(119, prefixed(b"v"), flags=["END_STREAM"]))
    s.answer(119)
    s.ask(121, "ExecSync")
    s.s(hf.HeadersFrame(121, data=s.server_enc.encode([(":status", "200")]), flags=["END_HEADERS"]),
        hf.HeadersFrame(121, data=s.server_enc.encode([("x-more", "1")]), flags=["END_HEADERS"]))  # a second block
    s.answer(121, http="200")
    s.unary(123, "Version")
    s.c(hf.HeadersFrame(127, data=s.client_enc.encode([(":method", "POST"), ("content-type", "application/grpc")]),
                     flags=["END_HEADERS"]), hf.DataFrame(127, prefixed(b"?"), flags=["END_STREAM"]))  # no :path
    s.answer(127)
    s.s(hf.GoAwayFrame(0, last_stream_id=125, error_code=0, additional_data=b"bye"))
    s.ask(125, "Version")  # open when the connection closes
    return s


def reads(s: Scenario, rng: random.Random, whole: bool) -> list[Event]:
    """The frames as the relay's reads cut them: each direction's bytes in order, the reads of
    both interleaved as the frames were; `whole`: reads end at frame ends (a busy relay's
    usual), else anywhere, frame headers included. The server's in the lean form."""
    out: list[Event] = []
    walker = LeanWalker()
    pending: dict[bool, bytes] = {True: b"", False: b""}
    for from_client, frame in s.frames:
        pending[from_client] += frame
        other = not from_client
        if pending[other] and (whole or rng.random() < 0.5):
            out.append((other, pending[other]))
            pending[other] = b""
        while not whole and len(pending[from_client]) > 1 and rng.random() < 0.3:
            cut = rng.randrange(1, len(pending[from_client]))
            out.append((from_client, pending[from_client][:cut]))
            pending[from_client] = pending[from_client][cut:]
    out.extend((side, rest) for side, rest in pending.items() if rest)
    lean: list[Event] = []
    for from_client, chunk in out:
        if not from_client:
            chunk = walker.feed(chunk)
        if chunk:
            lean.append((from_client, chunk))
    return lean


def feed(tap: RecordingTap, events: list[Event], now: list[float],
         peek: Callable[[ConnectionRecorder], None] = lambda conn: None) -> ConnectionRecorder:
    conn = tap.open(INFO)
    for i, (from_client, chunk) in enumerate(events):
        now[0] = 1000.0 + i
        (conn.client_bytes if from_client else conn.server_bytes)(chunk)
        peek(conn)
    now[0] += 1
    conn.closed(None)
    return conn


def calls_of(tap_type: type[RecordingTap], events: list[Event]) -> list[RecordedCall]:
    sink = MemorySink()
    now = [0.0]
    tap = tap_type(sink, clock=lambda: now[0] + 0.5, timer=lambda: now[0])
    if tap_type is RecordingTap:
        tap.lean = True
    feed(tap, events, now)
    return sink.calls


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("scenario", [plain, odd])
def test_the_calls_are_the_full_taps(scenario: Callable[[], Scenario], seed: int) -> None:
    """Without a metrics peer to count into, every call is promoted and ended by the full tap:
    the RecordedCalls are the full tap's, field by field, however the reads fall."""
    events = reads(scenario(), random.Random(seed), whole=seed % 2 == 0)
    full = calls_of(RecordingTap, events)
    assert calls_of(LeanTap, events) == full
    assert len(full) == (22 if scenario is plain else 22 + 14)


def telemetry() -> Telemetry:
    return Telemetry(TelemetryConfig(metrics_listen="unix:///unused.sock"), "unix:///rt.sock")


def scraped(peer: Telemetry) -> dict[Any, float]:
    assert peer.metrics is not None
    found = samples(generate_latest(peer.metrics.registry).decode())
    return {key: value for key, value in found.items() if key[0].startswith("cri_proxy_")
            and not key[0].endswith("_created")}


class Scrapes:
    """A tap fed `events` into a metrics peer: the calls in flight after each read, whether
    the lean tap was walking with calls of its own then, and the exposition at the end."""

    def __init__(self, tap_type: type[RecordingTap], events: list[Event]) -> None:
        peer = telemetry()
        now = [0.0]
        tap = tap_type(peer, clock=lambda: now[0] + 0.5, timer=lambda: now[0])
        tap.lean = True
        self.in_flight: list[list[tuple[str, float]]] = []
        self.quick: list[bool] = []
        feed(tap, events, now, self.peek)
        self.scraped = scraped(peer)

    def peek(self, conn: ConnectionRecorder) -> None:
        self.in_flight.append(sorted(open_calls({1: conn})))
        self.quick.append(type(conn) is LeanConnection and conn.quick and bool(conn.calls))


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("scenario", [plain, odd])
def test_the_metrics_and_the_calls_in_flight_are_the_full_taps(scenario: Callable[[], Scenario], seed: int) -> None:
    events = reads(scenario(), random.Random(seed), whole=seed % 2 == 1)
    full, lean = Scrapes(RecordingTap, events), Scrapes(LeanTap, events)
    assert lean.scraped == full.scraped
    assert lean.in_flight == full.in_flight
    assert any(lean.quick)  # the lean tap held calls of its own on the way
    peers = [full.scraped]
    calls = sum(v for (name, _), v in peers[0].items() if name == "cri_proxy_calls_total")
    assert calls == (22 if scenario is plain else 22 + 14)


def test_plain_calls_are_counted_without_being_built() -> None:
    """A connection of plain calls read frame by frame: no call reaches the sink, every one is
    counted, and the connection's calls are LeanCalls until they end."""
    events = reads(plain(), random.Random(1), whole=True)
    peer = telemetry()
    built: list[RecordedCall] = []
    peer.submit = built.append  # type: ignore[method-assign]  # what would reach the metrics built
    now = [0.0]
    kinds: set[type] = set()
    conn = feed(LeanTap(peer, clock=lambda: now[0], timer=lambda: now[0]), events, now,
                lambda c: kinds.update(type(call) for call in c.calls.values()))
    found = scraped(peer)
    assert sum(v for (name, _), v in found.items() if name == "cri_proxy_calls_total") == 22
    assert built == []
    assert kinds == {LeanCall} and isinstance(conn, LeanConnection)
    assert found[("cri_proxy_client_calls_total", frozenset({("client", "kubelet")}))] == 22


def test_blocks_kept_are_bounded_and_start_over() -> None:
    """Requests whose blocks differ call by call without changing the table (a value never
    indexed): the blocks kept by their bytes stay bounded, and the calls are the full tap's."""
    s = Scenario()
    for sid in range(1, 2 * MAX_BLOCKS + 41, 2):
        s.ask(sid, "Version", extra=(("x-request-id", str(sid), True),))  # True: never indexed
        s.answer(sid)
    events = reads(s, random.Random(0), whole=True)
    assert calls_of(LeanTap, events) == calls_of(RecordingTap, events)
    now = [0.0]
    kept: list[int] = []
    feed(LeanTap(MemorySink(), clock=lambda: now[0], timer=lambda: now[0]), events, now,
         lambda conn: kept.append(len(conn._asks)) if isinstance(conn, LeanConnection) else None)
    assert max(kept) == MAX_BLOCKS and 0 < kept[-1] < MAX_BLOCKS  # full once, then started over
