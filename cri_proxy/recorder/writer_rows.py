"""The rows of a batch's calls: the writer's (writer.BatchWriter's) half that makes them.

Each call becomes one thin `call_rows` row naming its shape (shapes.py), which names its
metadata sets (packing.py), client, route and payload rows (payload_rows.py); what a batch's
calls share (request metadata, client, route) is looked up once per batch, and each call is
counted into the batch's rollups (rollups.Rollup) as its row is made. Everything here runs in
the writer's transaction; the caches' pending ids are the writer's to commit or forget.
"""

from __future__ import annotations

import sqlite3

from cri_proxy.model.call import Direction, Metadata
from cri_proxy.recorder import packing, rollups
from cri_proxy.recorder.clients import ClientIds
from cri_proxy.recorder.payload_rows import Pending, PayloadRows
from cri_proxy.recorder.prepared import PreparedCall
from cri_proxy.recorder.shapes import Shapes
from cri_proxy.store.rows import INSERT_CALL, route, shape_values

__all__ = ["CallRows"]

# shape_messages.kind: the `messages` view spells it out as `request`, `response`.
_KIND = {Direction.REQUEST: 0, Direction.RESPONSE: 1}


class CallRows:
    """The id caches of the open file's stored rows, and the making of a batch's call rows."""

    _session_id: int | None
    _payloads: PayloadRows
    _sets: packing.MetadataSets
    _routes: packing.Routes
    _clients: ClientIds
    _shapes: Shapes

    def _write_calls(self, conn: sqlite3.Connection, items: list[PreparedCall], pending: Pending,
                     first_id: int, rollup: rollups.Rollup) -> None:
        """The batch's calls, one executemany; the calls numbered from `first_id` (max(id) + 1:
        what SQLite would give them) so an own shape can name its call. A call of a shape
        already stored adds its thin row alone."""
        session_id = self._session_id or 0
        calls: list[tuple[object, ...]] = []
        seen: dict[int, tuple[Metadata, int | None]] = {}
        # What the batch's calls share is looked up once per batch: the kubelet sends the same
        # request headers (grpc-timeout aside) on every call of a method, from the same client.
        requests: dict[tuple[tuple[str, str], ...], tuple[int | None, str | None]] = {}
        clients: dict[object, int | None] = {}  # None: no client known
        routes: dict[object, tuple[int, str]] = {}  # the route's id, and the path's method
        payload_id_of, set_id, shared_shape = self._payloads.id_of, self._set_id, self._shapes.shared
        for call_id, item in enumerate(items, first_id):
            call = item.call
            request = self._request_set(conn, call.request_metadata, requests)
            sets = (request[0], set_id(conn, call.response_metadata, seen), set_id(conn, call.trailers, seen))
            client_key = (call.peer_pid, call.peer_uid, call.peer_gid, call.peer_name, call.peer_exe)
            if client_key in clients:
                client_id = clients[client_key]
            else:
                client_id = clients[client_key] = self._clients.id_for(conn, call)
            route_key = (call.path, call.client_api, call.upstream_api, call.upstream)  # route(call) parses the path
            known = routes.get(route_key)
            if known is None:
                known = routes[route_key] = (self._routes.id_of(conn, route(call)), call.method)
            route_id, method = known
            bodies = [(m, payload_id_of(conn, item, i, m, pending)) for i, m in enumerate(call.messages)]
            offsets: list[int | None] = [None, None]  # the request's and the response's, in whole us
            shared: list[int | None] = [None, None]
            if len(bodies) <= 2 and not any([m.index for m, _ in bodies]):  # at most one each way: shareable
                for m, payload_id in bodies:
                    kind = _KIND[m.direction]
                    offset = m.offset_s * 1_000_000  # whole microseconds: offset_ms to 3 places, as ever
                    offsets[kind] = round(offset) if offset else 0
                    shared[kind] = payload_id * 2 + int(m.compressed)
                key = shape_values(call, item.ids, item.redacted, item.exit_code, sets, client_id, route_id,
                                   (shared[0], shared[1]), None, method)
                shape_id = shared_shape(conn, key)
            else:
                key = shape_values(call, item.ids, item.redacted, item.exit_code, sets, client_id, route_id,
                                   (None, None), call_id, method)
                shape_id = self._shapes.own(conn, key, [
                    (_KIND[m.direction], m.index, round(m.offset_s * 1_000_000) if m.offset_s else 0, payload_id,
                     int(m.compressed)) for m, payload_id in bodies])
            duration = call.duration_s
            duration_us = None if duration is None else round(duration * 1_000_000)
            if offsets[1] is not None and offsets[1] == duration_us:
                offsets[1] = None  # the response came with the trailers: `messages` reads the duration (schema 14)
            timeout = request[1]
            calls.append((call_id, session_id, call.conn_id, call.stream_id, call.started_at, duration_us, shape_id,
                          offsets[0], offsets[1], *((None, None) if timeout is None else packing.timeout_code(timeout))))
            rollup.count(session_id, call, duration_us, item.exit_code)
        conn.executemany(INSERT_CALL, calls)

    def _request_set(self, conn: sqlite3.Connection, metadata: Metadata,
                     batch: dict[tuple[tuple[str, str], ...], tuple[int | None, str | None]]
                     ) -> tuple[int | None, str | None]:
        """The request metadata's set id (its grpc-timeout blanked) and the timeout, by the
        pairs themselves in `batch` (the batch's): hashing a few short pairs is far cheaper
        than splitting out the timeout and spelling the set as JSON again."""
        try:
            key = tuple(metadata)
            found = batch.get(key)
        except TypeError:  # an unhashable pair (not the tap's): looked up the long way
            key, found = None, None
        if found is None:
            blanked, timeout = packing.split_timeout(metadata)
            found = (self._sets.id_of(conn, blanked), timeout)
            if key is not None:
                batch[key] = found
        return found

    def _set_id(self, conn: sqlite3.Connection, metadata: Metadata, seen: dict[int, tuple[Metadata, int | None]]
                ) -> int | None:
        """The metadata set's id; `seen` (the batch's) by the list itself: the tap hands the very
        same list to every call a server answers with the same headers (or trailers)."""
        known = seen.get(id(metadata))
        if known is not None and known[0] is metadata:
            return known[1]
        set_id = self._sets.id_of(conn, metadata)
        seen[id(metadata)] = (metadata, set_id)  # the list held: its id stays its own for the batch
        return set_id
