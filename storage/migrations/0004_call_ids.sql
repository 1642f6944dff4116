-- 0004_call_ids: ids for the calls recorded without them.
--
-- Up to this version the writer read a call's ids (pod name and namespace, sandbox and
-- container id, image) from its payload cache, which kept no JSON over 4,096 characters:
-- every call whose first request or response decoded to more than that (a CreateContainer
-- with many env vars, a verbose PodSandboxStatus) was stored with NULL ids. The JSON itself
-- was stored (payloads.json), so they are read from it here, by the rules of
-- cri_proxy/recorder/ids.py (tests/recorder/test_ids.py checks the two agree): only CRI
-- calls, not List*/Stream*; only non-empty strings; a column already set is kept.

CREATE TEMP TABLE ids_0004_json AS
SELECT c.id AS call_id, c.method AS method,
       (SELECT p.json FROM messages m JOIN payloads p ON p.id = m.payload_id
         WHERE m.call_id = c.id AND m.direction = 'request' AND m.idx = 0) AS req,
       (SELECT p.json FROM messages m JOIN payloads p ON p.id = m.payload_id
         WHERE m.call_id = c.id AND m.direction = 'response' AND m.idx = 0) AS resp
  FROM calls c
 WHERE (c.service GLOB 'runtime.v1.*' OR c.service GLOB 'runtime.v1alpha2.*')
   AND NOT (c.method GLOB 'List*' OR c.method GLOB 'Stream*')
   AND (c.pod_sandbox_id IS NULL OR c.container_id IS NULL OR c.image IS NULL
        OR c.pod_name IS NULL OR c.pod_namespace IS NULL);

-- A value counts only when it is a non-empty string.
CREATE TEMP TABLE ids_0004 (
    call_id INTEGER PRIMARY KEY, pod_sandbox_id TEXT, container_id TEXT, image TEXT, pod_name TEXT,
    pod_namespace TEXT
);
INSERT INTO ids_0004 (call_id, pod_sandbox_id, container_id, image, pod_name, pod_namespace)
SELECT call_id,
       CASE method
         WHEN 'RunPodSandbox' THEN COALESCE(
           NULLIF(CASE WHEN json_type(resp, '$.pod_sandbox_id') = 'text' THEN json_extract(resp, '$.pod_sandbox_id') END, ''),
           NULLIF(CASE WHEN json_type(req, '$.pod_sandbox_id') = 'text' THEN json_extract(req, '$.pod_sandbox_id') END, ''))
         ELSE NULLIF(CASE WHEN json_type(req, '$.pod_sandbox_id') = 'text' THEN json_extract(req, '$.pod_sandbox_id') END, '')
       END AS pod_sandbox_id,
       CASE method
         WHEN 'CreateContainer'
           THEN NULLIF(CASE WHEN json_type(resp, '$.container_id') = 'text' THEN json_extract(resp, '$.container_id') END, '')
         ELSE NULLIF(CASE WHEN json_type(req, '$.container_id') = 'text' THEN json_extract(req, '$.container_id') END, '')
       END AS container_id,
       CASE method
         WHEN 'CreateContainer'
           THEN NULLIF(CASE WHEN json_type(req, '$.config.image.image') = 'text' THEN json_extract(req, '$.config.image.image') END, '')
         WHEN 'PullImage' THEN COALESCE(
           NULLIF(CASE WHEN json_type(resp, '$.image_ref') = 'text' THEN json_extract(resp, '$.image_ref') END, ''),
           NULLIF(CASE WHEN json_type(req, '$.image.image') = 'text' THEN json_extract(req, '$.image.image') END, ''))
         ELSE NULLIF(CASE WHEN json_type(req, '$.image.image') = 'text' THEN json_extract(req, '$.image.image') END, '')
       END AS image,
       CASE method
         WHEN 'RunPodSandbox' THEN NULLIF(CASE WHEN json_type(req, '$.config.metadata.name') = 'text'
                                               THEN json_extract(req, '$.config.metadata.name') END, '')
         WHEN 'CreateContainer' THEN NULLIF(CASE WHEN json_type(req, '$.sandbox_config.metadata.name') = 'text'
                                                 THEN json_extract(req, '$.sandbox_config.metadata.name') END, '')
         WHEN 'PodSandboxStatus' THEN NULLIF(CASE WHEN json_type(resp, '$.status.metadata.name') = 'text'
                                                  THEN json_extract(resp, '$.status.metadata.name') END, '')
       END AS pod_name,
       CASE method
         WHEN 'RunPodSandbox' THEN NULLIF(CASE WHEN json_type(req, '$.config.metadata.namespace') = 'text'
                                               THEN json_extract(req, '$.config.metadata.namespace') END, '')
         WHEN 'CreateContainer' THEN NULLIF(CASE WHEN json_type(req, '$.sandbox_config.metadata.namespace') = 'text'
                                                 THEN json_extract(req, '$.sandbox_config.metadata.namespace') END, '')
         WHEN 'PodSandboxStatus' THEN NULLIF(CASE WHEN json_type(resp, '$.status.metadata.namespace') = 'text'
                                                  THEN json_extract(resp, '$.status.metadata.namespace') END, '')
       END AS pod_namespace
  FROM ids_0004_json;

UPDATE calls
   SET pod_sandbox_id = COALESCE(pod_sandbox_id, (SELECT i.pod_sandbox_id FROM ids_0004 i WHERE i.call_id = calls.id)),
       container_id = COALESCE(container_id, (SELECT i.container_id FROM ids_0004 i WHERE i.call_id = calls.id)),
       image = COALESCE(image, (SELECT i.image FROM ids_0004 i WHERE i.call_id = calls.id)),
       pod_name = COALESCE(pod_name, (SELECT i.pod_name FROM ids_0004 i WHERE i.call_id = calls.id)),
       pod_namespace = COALESCE(pod_namespace, (SELECT i.pod_namespace FROM ids_0004 i WHERE i.call_id = calls.id))
 WHERE id IN (SELECT call_id FROM ids_0004);

DROP TABLE ids_0004_json;
DROP TABLE ids_0004;
