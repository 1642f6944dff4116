-- 0005_exit_code: the exit code of ExecSync calls as a column.
--
-- An exec probe that exits non-zero is a failing probe, yet its call ends with gRPC status
-- OK: before this version only the decoded response JSON said so, and every view, `tail`
-- and `stats` showed such calls as healthy. `calls.exit_code` is the ExecSyncResponse's
-- `exit_code` for ExecSync calls that got a decoded response, NULL for every other call.
-- Protobuf's JSON mapping leaves out fields at their default, so a decoded response
-- without `exit_code` exited 0; an
-- undecodable one (the `_error` marker) or a compressed one says nothing. The same rule as cri_proxy/recorder/ids.py's
-- `exec_exit_code` (tests/recorder/test_ids.py checks the two agree); reading an older
-- file computes the same column on the fly (cri_proxy/store/compat.py reads this file).

ALTER TABLE calls ADD COLUMN exit_code INTEGER;

UPDATE calls
   SET exit_code = (
       SELECT CASE WHEN json_type(p.json, '$.exit_code') = 'integer' THEN json_extract(p.json, '$.exit_code')
                   WHEN json_type(p.json, '$.exit_code') IS NULL THEN 0 END
         FROM messages m JOIN payloads p ON p.id = m.payload_id
        WHERE m.call_id = calls.id AND m.direction = 'response' AND m.idx = 0
          AND m.compressed = 0 AND json_valid(p.json) AND json_type(p.json) = 'object'
          AND json_type(p.json, '$._error') IS NULL)
 WHERE method = 'ExecSync' AND (service GLOB 'runtime.v1.*' OR service GLOB 'runtime.v1alpha2.*');
