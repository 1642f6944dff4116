-- name: largest-replies
-- description: The calls with the largest responses (sum of their response messages), with
--   how long they took: the kubelet accepts at most 16 MiB.
-- param: limit how many calls to list
SELECT id AS call_id, started_at, method, response_bytes, response_count, request_bytes,
       duration_ms, COALESCE(status_name, outcome) AS status
FROM calls
ORDER BY response_bytes DESC
LIMIT :limit;
