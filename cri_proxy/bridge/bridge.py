"""The bridge: a grpc.aio server that serves CRI v1 and v1alpha2 whatever the runtime speaks.

Every method of both versions (and any other path, passed through untouched) is served by a
generic handler over raw bytes. Per call: read what the upstream speaks now (the prober it
is given knows; the bridge never probes itself), rewrite the
method path, run the checks the request type needs (parsed at most once), answer what the
runtime cannot (RuntimeConfig, UNIMPLEMENTED for the rest: see `answers`; emulated
GetContainerEvents), or
forward (see `forwarding`), once the fault rules (see `faults`) let it. Each call is recorded
once grpc has finished it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import pathlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc

from cri_proxy.model.call import Direction
from cri_proxy.messages.decode import method_types
from cri_proxy.model.sink import CallSink
from cri_proxy.bridge.answers import Refused, answer, check
from cri_proxy.bridge import forwarding
from cri_proxy.bridge import schema
from cri_proxy.bridge.events import EventEmulator
from cri_proxy.bridge.faults import BridgeFaults, client_name
from cri_proxy.bridge.forwarding import Context
from cri_proxy.bridge.channels import Upstream, Upstreams
from cri_proxy.bridge.options import BridgeOptions
from cri_proxy.model.upstream import EVENTS_MISSING, EVENTS_UNKNOWN, ApiSource, service_key
from cri_proxy.bridge.recording import Caller, CallLog

log = logging.getLogger(__name__)

EVENTS = "GetContainerEvents"
class Bridge:
    """Serves both CRI versions on `listen`, forwarding to `runtime` (and `image`).

    `apis` is the prober whose answers say what each upstream speaks; `sink` receives every
    call the bridge serves, with what translation did.
    """

    def __init__(self, listen: pathlib.Path, runtime: pathlib.Path, image: pathlib.Path | None = None,
                 *, apis: ApiSource, sink: CallSink | None = None, options: BridgeOptions | None = None,
                 callers: Callable[[str], Caller | None] | None = None, faults: BridgeFaults | None = None) -> None:
        self.listen = listen
        self.callers = callers  # grpc's peer string -> the relay's client behind it
        self.faults = faults  # the proxy's fault rules (--faults, --control), checked on every call
        self.options = options or BridgeOptions()
        self.sink = sink
        self.source = apis
        self.upstreams = Upstreams(runtime, image, self.options, apis)
        self._serving = asyncio.Lock()
        self.events = EventEmulator(self.upstreams.runtime, lambda: self.api_for("runtime"),
                                    self.options.events_period)
        self._server: grpc.aio.Server | None = None
        self._handlers: dict[str, grpc.RpcMethodHandler] = {}

    def api_for(self, key: str) -> str | None:
        """The version the bridge speaks to the "runtime" or "image" upstream now (None: unknown)."""
        if self.options.upstream_api != "auto":
            return self.options.upstream_api  # the operator said so
        return self.source.apis.preferred_for(key)

    @property
    def address(self) -> str:
        return f"unix://{self.listen}"

    async def start(self) -> None:
        """Watch the upstream channels, then serve."""
        self.upstreams.start()
        await self.serve()

    async def ensure_serving(self) -> None:
        """Start serving if not yet: the proxy starts the bridge when a connection first needs it."""
        async with self._serving:
            if self._server is None:
                await self.serve()

    async def serve(self) -> None:
        limit = self.options.max_message_bytes
        server = grpc.aio.server(options=[("grpc.max_receive_message_length", limit),
                                          ("grpc.max_send_message_length", limit)])
        server.add_generic_rpc_handlers([_Generic(self)])
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.listen)
        server.add_insecure_port(self.address)
        await server.start()
        self._server = server
        log.info("bridge serving CRI v1 and v1alpha2 on %s; the runtime speaks %s", self.address,
                 self.source.apis.describe())

    async def stop(self, grace: float | None = None) -> None:
        await self.events.close()
        if self._server is not None:
            await self._server.stop(grace)
            self._server = None
        await self.upstreams.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.listen)

    # --- dispatch -----------------------------------------------------------------------

    def handler(self, path: str) -> grpc.RpcMethodHandler:
        found = self._handlers.get(path)
        if found is not None:
            return found
        parts = schema.split_path(path)
        made: grpc.RpcMethodHandler
        if parts is None or method_types(path) is None:
            made = grpc.stream_stream_rpc_method_handler(_bind(self.passthrough, path))
        elif schema.server_streaming(path):
            made = grpc.unary_stream_rpc_method_handler(_bind(self.unary_stream, path))
        else:
            made = grpc.unary_unary_rpc_method_handler(_bind(self.unary_unary, path))
        self._handlers[path] = made
        return made

    def _begin(self, path: str, context: Context) -> tuple[CallLog, Upstream, str, str, str]:
        parts = schema.split_path(path)
        if parts is None:
            raise ValueError(path)
        client_api, service, method = parts
        up = self.upstreams.upstream(service_key(service))
        call = CallLog(self.sink, path, client_api, up.target, context.invocation_metadata() or ())
        call.caller = self._caller(context)
        call.attach(context)
        return call, up, client_api, service, method

    def _caller(self, context: Context) -> Caller | None:
        if self.callers is None or self.sink is None:
            return None
        try:
            return self.callers(context.peer())
        except Exception:  # who called is worth a column, never a failed call
            log.debug("could not tell who made a bridged call", exc_info=True)
            return None

    async def _fault(self, call: CallLog, client_api: str | None, method: str, request: bytes | None,
                     context: Context) -> dict[str, str] | None:
        """Apply the fault rule that takes this call, if one does (see `faults`); the request's pod
        facts for what its answer teaches, None without rules."""
        if self.faults is None:
            return None
        who = call.caller if call.caller is not None or self.callers is None else self.callers(context.peer())
        decision, facts = self.faults.decide(method, client_api, client_name(who), request)
        if decision is not None:
            await self.faults.apply(decision, call, context)
        return facts

    async def unary_unary(self, path: str, request: bytes, context: Context) -> bytes:
        call, up, client_api, _service, method = self._begin(path, context)
        call.add(Direction.REQUEST, request)
        facts = await self._fault(call, client_api, method, request, context)
        api = self.api_for(up.name) or client_api
        try:
            reply = await self._unary(call, up, api, path, request, context)
        except Refused as exc:
            call.status(exc.code, exc.details)
            await context.abort(exc.code, exc.details)
            raise  # abort raised already; this keeps type checkers informed
        if facts is not None and self.faults is not None:
            self.faults.learn(method, facts, reply)
        return reply

    async def _unary(self, call: CallLog, up: Upstream, api: str, path: str, request: bytes,
                     context: Context, retried: bool = False) -> bytes:
        client_api, service, method = schema.split_path(path) or ("", "", "")
        call.upstream_api = api
        if api != client_api:
            call.note(f"translated {client_api} -> {api}")
        if not schema.has_method(api, service, method):
            return answer(call, api, method, self.options.cgroup_driver)
        if client_api == "v1" and api == "v1alpha2" and f"{service}/{method}" in schema.checked_requests():
            check(call, path, request, self.options.strict)
        try:
            return await forwarding.unary(up, schema.cri_path(api, service, method), request,
                                          context, call)
        except grpc.aio.AioRpcError as exc:
            if exc.code() != grpc.StatusCode.UNIMPLEMENTED:
                await forwarding.relay_error(exc, up, context, call)
            if method == "RuntimeConfig" and self.options.cgroup_driver is not None:
                return answer(call, api, method, self.options.cgroup_driver)  # a v1 runtime older than RuntimeConfig
            # A method its version has was refused: the runtime may have been replaced by one
            # speaking the other version before the watcher noticed. Ask again; retry once.
            now = None if retried else await self._reprobe(up)
            if now is None or now == api:
                await forwarding.relay_error(exc, up, context, call)
            call.note(f"runtime now speaks {now}: retried")
            return await self._unary(call, up, now, path, request, context, retried=True)

    async def _reprobe(self, up: Upstream) -> str | None:
        if self.options.upstream_api != "auto":
            return None
        return (await self.source.reprobe()).preferred_for(up.name)

    async def unary_stream(self, path: str, request: bytes, context: Context) -> AsyncIterator[bytes]:
        call, up, client_api, service, method = self._begin(path, context)
        call.add(Direction.REQUEST, request)
        await self._fault(call, client_api, method, request, context)
        api = self.api_for(up.name) or client_api
        call.upstream_api = api
        if method == EVENTS and client_api == "v1" and await self._emulating(up, api):
            call.note(f"GetContainerEvents emulated by relisting every {self.options.events_period}s")
            async for event in self._emulate(call, context):
                yield event
            return
        if not schema.has_method(api, service, method):
            call.note(f"answered by the proxy: UNIMPLEMENTED ({api} runtime)")
            details = f"{method} is not available: the runtime speaks CRI {api}, which lacks it"
            call.status(grpc.StatusCode.UNIMPLEMENTED, details)
            await context.abort(grpc.StatusCode.UNIMPLEMENTED, details)
        if api != client_api:
            call.note(f"translated {client_api} -> {api}")
        upstream = up.channel.unary_stream(schema.cri_path(api, service, method), None, None)(
            request, timeout=context.time_remaining(),
            metadata=forwarding.copyable(context.invocation_metadata()), wait_for_ready=False)
        async for reply in forwarding.stream(up, upstream, context, call):
            yield reply

    async def _emulating(self, up: Upstream, api: str) -> bool:
        if not self.options.emulate_events:
            return False
        events = self.source.apis.events
        if api == "v1" and events == EVENTS_UNKNOWN:
            events = (await self.source.reprobe()).events
        return api != "v1" or events == EVENTS_MISSING

    async def _emulate(self, call: CallLog, context: Context) -> AsyncIterator[bytes]:
        queue = self.events.subscribe()
        try:
            await context.send_initial_metadata(())
            while True:
                data = await queue.get()
                call.add(Direction.RESPONSE, data)
                yield data
        finally:
            self.events.unsubscribe(queue)

    async def passthrough(self, path: str, requests: AsyncIterator[bytes],
                          context: Context) -> AsyncIterator[bytes]:
        """Any other method (containerd's own API, health, newer CRI): forwarded unchanged."""
        parts = schema.split_path(path)
        up = self.upstreams.upstream(service_key(parts[1]) if parts else "runtime")
        call = CallLog(self.sink, path, parts[0] if parts else None, up.target,
                       context.invocation_metadata() or ())
        call.upstream_api = call.client_api
        call.caller = self._caller(context)
        call.attach(context)
        call.note("passed through: not a method the bridge knows")
        if parts is not None:  # a CRI path (a newer method): the rules may name it
            await self._fault(call, parts[0], parts[2], None, context)

        async def relayed() -> AsyncIterator[bytes]:
            async for item in requests:
                call.add(Direction.REQUEST, item)
                yield item

        upstream = up.channel.stream_stream(path, None, None)(
            relayed(), timeout=context.time_remaining(),
            metadata=forwarding.copyable(context.invocation_metadata()), wait_for_ready=False)
        async for reply in forwarding.stream(up, upstream, context, call):
            yield reply


def _bind(fn: Callable[..., Any], path: str) -> Callable[..., Any]:
    # a partial, not a closure: grpc.aio looks through partials to see a coroutine function
    # or an async generator function, and serves each kind accordingly
    return functools.partial(fn, path)


class _Generic(grpc.GenericRpcHandler):
    def __init__(self, bridge: Bridge) -> None:
        self.bridge = bridge

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        return self.bridge.handler(handler_call_details.method)
