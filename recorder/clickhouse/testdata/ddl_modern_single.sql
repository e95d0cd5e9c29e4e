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
    ts DateTime64(6, 'UTC'),
    ts_ns UInt64 CODEC(Delta, ZSTD(1)),
    duration_us Int64 CODEC(T64, ZSTD(1)),
    queue_us Int64 CODEC(T64, ZSTD(1)),
    connect_us Int64 CODEC(T64, ZSTD(1)),
    ttfb_us Int64 CODEC(T64, ZSTD(1)),
    method LowCardinality(String),
    server LowCardinality(String),
    target LowCardinality(String),
    rpc_id String,
    principal LowCardinality(String),
    auth_decision LowCardinality(String),
    auth_rule LowCardinality(String),
    route_rule LowCardinality(String),
    backend LowCardinality(String),
    attempt UInt8,
    fallback UInt8,
    outcome Enum8('ok' = 0, 'tool_error' = 1, 'jsonrpc_error' = 2, 'transport_error' = 3, 'denied' = 4),
    error_code Int32,
    error_message String CODEC(ZSTD(1)),
    request_bytes UInt32,
    response_bytes UInt32,
    client_name LowCardinality(String),
    client_version LowCardinality(String),
    protocol_version LowCardinality(String),
    upstream_version LowCardinality(String),
    gateway_instance LowCardinality(String),
    gateway_version LowCardinality(String),
    config_hash LowCardinality(String),
    has_params UInt8,
    has_result UInt8,
    attr_keys Array(String),
    attr_values Array(String),
    INDEX idx_trace_id trace_id TYPE bloom_filter(0.01) GRANULARITY 4,
    INDEX idx_session_id session_id TYPE bloom_filter(0.01) GRANULARITY 4
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMMDD(ts)
ORDER BY (request_id, event_id)
TTL toDateTime(ts) + INTERVAL 30 DAY
SETTINGS non_replicated_deduplication_window = 1000;

CREATE TABLE IF NOT EXISTS mcptrail.payloads (
    event_id String,
    request_id String,
    ts DateTime64(6, 'UTC'),
    params String CODEC(ZSTD(3)),
    result String CODEC(ZSTD(3)),
    truncated UInt8,
    params_sha256 String,
    result_sha256 String
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMMDD(ts)
ORDER BY (request_id, event_id)
TTL toDateTime(ts) + INTERVAL 7 DAY
SETTINGS non_replicated_deduplication_window = 1000;

CREATE TABLE IF NOT EXISTS mcptrail.request_index (
    id String,
    kind Enum8('request' = 1, 'trace' = 2, 'session' = 3),
    request_id String,
    ts DateTime64(6, 'UTC'),
    min_ts_ns UInt64,
    max_ts_ns UInt64
) ENGINE = MergeTree
PARTITION BY toYYYYMMDD(ts)
ORDER BY (id, request_id)
TTL toDateTime(ts) + INTERVAL 30 DAY
SETTINGS non_replicated_deduplication_window = 1000;

CREATE TABLE IF NOT EXISTS mcptrail.audit (
    ts DateTime64(6, 'UTC'),
    ts_ns UInt64,
    event_id String,
    request_id String,
    session_id String,
    trace_id String,
    principal String,
    method LowCardinality(String),
    server LowCardinality(String),
    target LowCardinality(String),
    decision LowCardinality(String),
    rule LowCardinality(String),
    outcome Enum8('ok' = 0, 'tool_error' = 1, 'jsonrpc_error' = 2, 'transport_error' = 3, 'denied' = 4),
    error_code Int32,
    error_message String,
    duration_us Int64,
    client_name LowCardinality(String),
    INDEX idx_request_id request_id TYPE bloom_filter(0.01) GRANULARITY 4
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (principal, ts, event_id)
TTL toDateTime(ts) + INTERVAL 400 DAY
SETTINGS non_replicated_deduplication_window = 1000;

CREATE TABLE IF NOT EXISTS mcptrail.write_tokens (
    token String,
    ts DateTime,
    events UInt32
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMMDD(ts)
ORDER BY token
TTL toDateTime(ts) + INTERVAL 30 DAY;

-- migration 0002_redaction_replay
-- mcptrail:if-missing-column hops redaction_version
ALTER TABLE mcptrail.hops ADD COLUMN redaction_version LowCardinality(String) AFTER config_hash;

-- mcptrail:if-missing-column hops redaction_count
ALTER TABLE mcptrail.hops ADD COLUMN redaction_count UInt16 AFTER redaction_version;

CREATE TABLE IF NOT EXISTS mcptrail.replay_runs (
    replay_run_id String,
    started DateTime64(6, 'UTC'),
    finished DateTime64(6, 'UTC'),
    mode LowCardinality(String),
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
    started DateTime64(6, 'UTC'),
    request_id String,
    tool LowCardinality(String),
    status Enum8('identical' = 1, 'changed' = 2, 'failed' = 3, 'skipped' = 4),
    diff String CODEC(ZSTD(3)),
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
    ts DateTime64(6, 'UTC'),
    ts_ns UInt64,
    server LowCardinality(String),
    tool String,
    kind Enum8('pinned' = 1, 'changed' = 2, 'approved' = 3),
    hash String,
    prev_hash String,
    definition String CODEC(ZSTD(3)),
    diff String CODEC(ZSTD(3)),
    action LowCardinality(String),
    actor String
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (server, tool, ts_ns, kind, hash);

-- migration 0007_audit_roles
-- mcptrail:if-missing-column audit roles
ALTER TABLE mcptrail.audit ADD COLUMN roles Array(String) AFTER rule;

