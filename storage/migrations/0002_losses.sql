-- 0002_losses: one row per episode in which calls were lost, so a gap in the recording can
-- be explained with SQL (sessions keeps only the totals).

CREATE TABLE losses (
    id INTEGER PRIMARY KEY,
    session_id INTEGER NOT NULL REFERENCES sessions(id),
    started_at TEXT NOT NULL,
    ended_at TEXT,
    reason TEXT NOT NULL,
    calls_lost INTEGER NOT NULL
);
CREATE INDEX losses_started_at ON losses(started_at);
