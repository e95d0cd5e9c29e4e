-- migration 0000_schema_migrations
CREATE DATABASE IF NOT EXISTS mcptrail;

CREATE TABLE IF NOT EXISTS mcptrail.schema_migrations (
    version UInt32,
    name String,
    checksum String,
    applied DateTime
) ENGINE = ReplacingMergeTree
ORDER BY version;

-- migration 0001_base
CREATE TABLE IF NOT EXISTS mcptrail.hops (
    event_id String,
    request_id String,
    session_id String,
    trace_id String,
    span_id String,
    hop Enum8('unknown' = 0, 'inbound' = 1, 'auth' = 2, 'route' = 3, 'upstream' = 4, 'response' = 5, 'notification' = 6, 'server_request' = 7),
    seq UInt32,
    ts DateTime,
    ts_ns UInt64,
    duration_us Int64,
    queue_us Int64,
    connect_us Int64,
    ttfb_us Int64,
    method String,
    server String,
    target String,
    rpc_id String,
    principal String,
    auth_decision String,
    auth_rule String,
    route_rule String,
    backend String,
    attempt UInt8,
    fallback UInt8,
    outcome Enum8('ok' = 0, 'tool_error' = 1, 'jsonrpc_error' = 2, 'transport_error' = 3, 'denied' = 4),
    error_code Int32,
    error_message String,
    request_bytes UInt32,
    response_bytes UInt32,
    client_name String,
    client_version String,
    protocol_version String,
    upstream_version String,
    gateway_instance String,
    gateway_version String,
    config_hash String,
    has_params UInt8,
    has_result UInt8,
    attr_keys Array(String),
    attr_values Array(String)
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMMDD(ts)
ORDER BY (request_id, event_id);

CREATE TABLE IF NOT EXISTS mcptrail.payloads (
    event_id String,
    request_id String,
    ts DateTime,
    params String,
    result String,
    truncated UInt8,
    params_sha256 String,
    result_sha256 String
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMMDD(ts)
ORDER BY (request_id, event_id);

CREATE TABLE IF NOT EXISTS mcptrail.request_index (
    id String,
    kind Enum8('request' = 1, 'trace' = 2, 'session' = 3),
    request_id String,
    ts DateTime,
    min_ts_ns UInt64,
    max_ts_ns UInt64
) ENGINE = MergeTree
PARTITION BY toYYYYMMDD(ts)
ORDER BY (id, request_id);

CREATE TABLE IF NOT EXISTS mcptrail.audit (
    ts DateTime,
    ts_ns UInt64,
    event_id String,
    request_id String,
    session_id String,
    trace_id String,
    principal String,
    method String,
    server String,
    target String,
    decision String,
    rule String,
    outcome Enum8('ok' = 0, 'tool_error' = 1, 'jsonrpc_error' = 2, 'transport_error' = 3, 'denied' = 4),
    error_code Int32,
    error_message String,
    duration_us Int64,
    client_name String
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (principal, ts, event_id);

CREATE TABLE IF NOT EXISTS mcptrail.write_tokens (
    token String,
    ts DateTime,
    events UInt32
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMMDD(ts)
ORDER BY token;

-- migration 0002_redaction_replay
-- mcptrail:if-missing-column hops redaction_version
ALTER TABLE mcptrail.hops ADD COLUMN redaction_version String AFTER config_hash;

-- mcptrail:if-missing-column hops redaction_count
ALTER TABLE mcptrail.hops ADD COLUMN redaction_count UInt16 AFTER redaction_version;

CREATE TABLE IF NOT EXISTS mcptrail.replay_runs (
    replay_run_id String,
    started DateTime,
    finished DateTime,
    mode String,
    target String,
    selection String,
    total UInt32,
    identical UInt32,
    changed UInt32,
    failed UInt32,
    skipped UInt32
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(started)
ORDER BY replay_run_id;

CREATE TABLE IF NOT EXISTS mcptrail.replay_results (
    replay_run_id String,
    started DateTime,
    request_id String,
    tool String,
    status Enum8('identical' = 1, 'changed' = 2, 'failed' = 3, 'skipped' = 4),
    diff String,
    error String,
    original_us Int64,
    replay_us Int64
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(started)
ORDER BY (replay_run_id, request_id);

-- migration 0003_request_index_view
CREATE MATERIALIZED VIEW IF NOT EXISTS mcptrail.request_index_mv TO mcptrail.request_index AS
SELECT
    id,
    CAST(kind_name AS Enum8('request' = 1, 'trace' = 2, 'session' = 3)) AS kind,
    request_id,
    min(ts) AS ts,
    min(ts_ns) AS min_ts_ns,
    max(ts_ns) AS max_ts_ns
FROM mcptrail.hops
ARRAY JOIN [request_id, trace_id, session_id] AS id, ['request', 'trace', 'session'] AS kind_name
WHERE request_id != '' AND id != ''
GROUP BY id, kind_name, request_id;

-- migration 0006_tool_pins
CREATE TABLE IF NOT EXISTS mcptrail.tool_pins (
    ts DateTime,
    ts_ns UInt64,
    server String,
    tool String,
    kind Enum8('pinned' = 1, 'changed' = 2, 'approved' = 3),
    hash String,
    prev_hash String,
    definition String,
    diff String,
    action String,
    actor String
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (server, tool, ts_ns, kind, hash);

-- migration 0007_audit_roles
-- mcptrail:if-missing-column audit roles
ALTER TABLE mcptrail.audit ADD COLUMN roles Array(String) AFTER rule;

