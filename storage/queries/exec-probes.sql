-- name: exec-probes
-- description: ExecSync calls (exec probes and `kubectl exec` without a TTY) over the last
--   minutes, per container and command: how many, how many failed as calls or exited
--   non-zero, and how long they took. Commands come from the decoded JSON, exit codes from
--   calls.exit_code.
-- param: minutes how far back to look
WITH execs AS (
    SELECT c.id, c.container_id, c.duration_ms, c.status_code, c.outcome, c.exit_code,
           (SELECT json_extract(p.json, '$.cmd')
            FROM messages AS m JOIN payloads AS p ON p.id = m.payload_id
            WHERE m.call_id = c.id AND m.direction = 'request' AND m.idx = 0) AS cmd
    FROM calls AS c
    WHERE c.method = 'ExecSync' AND c.started_unix >= CAST(strftime('%s', 'now', '-' || :minutes || ' minutes') AS INTEGER) - 0.0005
)
SELECT e.container_id, l.container_name, l.pod_namespace, l.pod_name, e.cmd,
       COUNT(*) AS calls,
       SUM(e.status_code IS NOT 0 OR e.outcome <> 'completed') AS failed_calls,
       SUM(e.exit_code IS NOT NULL AND e.exit_code <> 0) AS nonzero_exits,
       ROUND(AVG(e.duration_ms), 3) AS avg_ms,
       MAX(e.duration_ms) AS max_ms
FROM execs AS e
LEFT JOIN container_lifecycle AS l ON l.container_id = e.container_id
GROUP BY e.container_id, e.cmd
ORDER BY calls DESC;
