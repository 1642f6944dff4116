-- name: busiest-methods
-- description: Calls per method over the last minutes: count, rate, bytes both ways,
--   mean latency and failures, busiest first.
-- param: minutes how far back to look
SELECT service, method,
       COUNT(*) AS calls,
       ROUND(COUNT(*) / (:minutes * 60.0), 3) AS per_second,
       SUM(request_bytes + response_bytes) AS bytes,
       ROUND(AVG(duration_ms), 3) AS avg_ms,
       SUM(status_code IS NOT 0 OR outcome <> 'completed') AS failed
FROM calls
WHERE started_unix >= CAST(strftime('%s', 'now', '-' || :minutes || ' minutes') AS INTEGER) - 0.0005
GROUP BY service, method
ORDER BY calls DESC;
