-- name: pod-startup
-- description: Why did this pod take long to start: every call that concerns it (by name
--   and namespace, the sandbox and container ids those led to, and the image pulls made
--   for it) in time order, with each call's duration and the gap since the previous call
--   ended.
-- param: pod_name the pod's metadata.name
-- param: pod_namespace the pod's namespace
WITH pod_ids AS (
    SELECT DISTINCT pod_sandbox_id FROM calls
    WHERE pod_name = :pod_name AND pod_namespace = :pod_namespace
      AND pod_sandbox_id IS NOT NULL
), container_ids AS (
    SELECT DISTINCT container_id FROM calls
    WHERE container_id IS NOT NULL
      AND pod_sandbox_id IN (SELECT pod_sandbox_id FROM pod_ids)
), relevant AS (
    SELECT * FROM calls
    WHERE (pod_name = :pod_name AND pod_namespace = :pod_namespace)
       OR pod_sandbox_id IN (SELECT pod_sandbox_id FROM pod_ids)
       OR container_id IN (SELECT container_id FROM container_ids)
    UNION
    SELECT c.* FROM calls AS c
    JOIN messages AS m ON m.call_id = c.id AND m.direction = 'request' AND m.idx = 0
    JOIN payloads AS p ON p.id = m.payload_id
    WHERE c.method = 'PullImage'
      AND json_extract(p.json, '$.sandbox_config.metadata.name') = :pod_name
      AND json_extract(p.json, '$.sandbox_config.metadata.namespace') = :pod_namespace
)
SELECT id AS call_id, started_at, method, duration_ms,
       ROUND(1000 * (started_unix - LAG(started_unix + COALESCE(duration_ms, 0) / 1000)
                                    OVER (ORDER BY started_unix)), 3) AS gap_ms,
       COALESCE(status_name, outcome) AS status, status_message,
       pod_sandbox_id, container_id, image
FROM relevant
ORDER BY started_unix;
