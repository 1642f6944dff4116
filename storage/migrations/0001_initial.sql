-- 0001_initial: sessions, calls, deduplicated payloads and the messages that point at them.
-- Applied inside one transaction by cri_proxy.store.db, which also writes the
-- schema_migrations row. Times: *_at columns are UTC text 'YYYY-MM-DD HH:MM:SS.mmm' (the
-- shape of SQLite's datetime() plus milliseconds, so `started_at > datetime('now','-1 hour')`
-- compares correctly as text); *_unix columns are seconds since the epoch.

CREATE TABLE sessions (
    id INTEGER PRIMARY KEY,
    started_at TEXT NOT NULL,
    started_unix REAL NOT NULL,
    ended_at TEXT,
    cri_proxy_version TEXT NOT NULL,
    format_version INTEGER NOT NULL,
    hostname TEXT,
    pid INTEGER,
    config TEXT,
    listen TEXT,
    runtime_endpoint TEXT,
    image_endpoint TEXT,
    runtime_api TEXT,
    image_api TEXT,
    calls_recorded INTEGER NOT NULL DEFAULT 0,
    calls_lost INTEGER NOT NULL DEFAULT 0,
    loss_episodes INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE calls (
    id INTEGER PRIMARY KEY,
    session_id INTEGER NOT NULL REFERENCES sessions(id),
    conn_id INTEGER NOT NULL,
    stream_id INTEGER NOT NULL,
    started_at TEXT NOT NULL,
    started_unix REAL NOT NULL,
    duration_ms REAL,
    service TEXT NOT NULL,
    method TEXT NOT NULL,
    path TEXT NOT NULL,
    client_api TEXT,
    upstream_api TEXT,
    status_code INTEGER,
    status_name TEXT,
    status_message TEXT,
    outcome TEXT NOT NULL,
    request_bytes INTEGER NOT NULL,
    response_bytes INTEGER NOT NULL,
    request_count INTEGER NOT NULL,
    response_count INTEGER NOT NULL,
    peer_pid INTEGER,
    peer_uid INTEGER,
    upstream TEXT,
    request_metadata TEXT,
    response_metadata TEXT,
    trailers TEXT,
    redacted INTEGER NOT NULL DEFAULT 0,
    notes TEXT,
    format_version INTEGER NOT NULL,
    pod_sandbox_id TEXT,
    container_id TEXT,
    image TEXT,
    pod_name TEXT,
    pod_namespace TEXT
);
CREATE INDEX calls_started_at ON calls(started_at);
CREATE INDEX calls_method ON calls(method, duration_ms);
CREATE INDEX calls_session ON calls(session_id);
CREATE INDEX calls_pod_sandbox_id ON calls(pod_sandbox_id) WHERE pod_sandbox_id IS NOT NULL;
CREATE INDEX calls_container_id ON calls(container_id) WHERE container_id IS NOT NULL;
CREATE INDEX calls_pod_name ON calls(pod_namespace, pod_name) WHERE pod_name IS NOT NULL;
CREATE INDEX calls_failed ON calls(started_at)
    WHERE status_code IS NOT 0 OR outcome <> 'completed';

CREATE TABLE payloads (
    id INTEGER PRIMARY KEY,
    sha256 TEXT NOT NULL UNIQUE,
    size INTEGER NOT NULL,
    data BLOB,
    json TEXT,
    truncated INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE messages (
    call_id INTEGER NOT NULL REFERENCES calls(id),
    direction TEXT NOT NULL,
    idx INTEGER NOT NULL,
    offset_ms REAL NOT NULL,
    payload_id INTEGER NOT NULL REFERENCES payloads(id),
    compressed INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (call_id, direction, idx)
) WITHOUT ROWID;
CREATE INDEX messages_payload ON messages(payload_id);
