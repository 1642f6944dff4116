-- name: failed-last-hour
-- description: Calls of the last hour that went wrong, newest first: errors (status not
--   OK), calls cancelled or cut off, and exec probes whose command exited non-zero (an OK
--   call with an `exit_code`); `kind` says which (the `problems` view).
SELECT call_id, started_at, kind, method, duration_ms, status_name, status_message, outcome, exit_code,
       pod_namespace, pod_name, container_id, image
FROM problems
WHERE started_at > datetime('now', '-1 hour')
ORDER BY started_at DESC;
