-- name: failed-last-hour
-- description: Calls of the last hour that did not end with status OK (errors, cancelled,
--   cut off), newest first.
SELECT call_id, started_at, method, duration_ms, status_name, status_message, outcome,
       pod_namespace, pod_name, container_id, image
FROM errors
WHERE started_at > datetime('now', '-1 hour')
ORDER BY started_at DESC;
