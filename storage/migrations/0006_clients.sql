-- 0006_clients: who made each call, stored once per client process.
--
-- The relay reads the client's credentials when it accepts a connection (SO_PEERCRED: pid,
-- uid, gid) and, from /proc, its process name (`comm`) and executable. Calls have always
-- kept `peer_pid` and `peer_uid`; the rest would repeat the same text on every row (the
-- kubelet makes thousands of calls a minute from one process), so a client is a row of
-- `clients`, unique on everything it holds, and `calls.client_id` points at it. Any of its
-- columns may be NULL: the executable of another user's process cannot be read without
-- CAP_SYS_PTRACE, and a process gone before the relay looked has no /proc entry.
-- Calls recorded before this version have `client_id` NULL (their pid and uid stay where
-- they were); so do calls the bridge served, whose only client it sees is the relay.

CREATE TABLE clients (
    id INTEGER PRIMARY KEY,
    pid INTEGER,
    uid INTEGER,
    gid INTEGER,
    name TEXT,
    exe TEXT
);

-- One row per distinct client; NULLs compare equal here (a plain UNIQUE would not).
CREATE UNIQUE INDEX clients_identity ON clients (
    ifnull(pid, -1), ifnull(uid, -1), ifnull(gid, -1), ifnull(name, ''), ifnull(exe, '')
);

ALTER TABLE calls ADD COLUMN client_id INTEGER REFERENCES clients (id);
