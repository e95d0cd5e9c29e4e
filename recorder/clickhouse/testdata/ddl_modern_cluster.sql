-- migration 0000_schema_migrations
CREATE DATABASE IF NOT EXISTS mcptrail ON CLUSTER 'mcp';

CREATE TABLE IF NOT EXISTS mcptrail.schema_migrations_local ON CLUSTER 'mcp' (
    version UInt32,
    name String,
    checksum String,
    applied DateTime
) ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/mcptrail/schema_migrations_local', '{replica}')
ORDER BY version;

CREATE TABLE IF NOT EXISTS mcptrail.schema_migrations ON CLUSTER 'mcp' AS mcptrail.schema_migrations_local
ENGINE = Distributed('mcp', 'mcptrail', 'schema_migrations_local', rand());

-- migration 0001_base
CREATE TABLE IF NOT EXISTS mcptrail.hops_local ON CLUSTER 'mcp' (
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
) ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/mcptrail/hops_local', '{replica}')
PARTITION BY toYYYYMMDD(ts)
ORDER BY (request_id, event_id)
TTL toDateTime(ts) + INTERVAL 30 DAY;

CREATE TABLE IF NOT EXISTS mcptrail.hops ON CLUSTER 'mcp' AS mcptrail.hops_local
ENGINE = Distributed('mcp', 'mcptrail', 'hops_local', cityHash64(request_id));

CREATE TABLE IF NOT EXISTS mcptrail.payloads_local ON CLUSTER 'mcp' (
    event_id String,
    request_id String,
    ts DateTime64(6, 'UTC'),
    params String CODEC(ZSTD(3)),
    result String CODEC(ZSTD(3)),
    truncated UInt8,
    params_sha256 String,
    result_sha256 String
) ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/mcptrail/payloads_local', '{replica}')
PARTITION BY toYYYYMMDD(ts)
ORDER BY (request_id, event_id)
TTL toDateTime(ts) + INTERVAL 7 DAY;

CREATE TABLE IF NOT EXISTS mcptrail.payloads ON CLUSTER 'mcp' AS mcptrail.payloads_local
ENGINE = Distributed('mcp', 'mcptrail', 'payloads_local', cityHash64(request_id));

CREATE TABLE IF NOT EXISTS mcptrail.request_index_local ON CLUSTER 'mcp' (
    id String,
    kind Enum8('request' = 1, 'trace' = 2, 'session' = 3),
    request_id String,
    ts DateTime64(6, 'UTC'),
    min_ts_ns UInt64,
    max_ts_ns UInt64
) ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/mcptrail/request_index_local', '{replica}')
PARTITION BY toYYYYMMDD(ts)
ORDER BY (id, request_id)
TTL toDateTime(ts) + INTERVAL 30 DAY;

CREATE TABLE IF NOT EXISTS mcptrail.request_index ON CLUSTER 'mcp' AS mcptrail.request_index_local
ENGINE = Distributed('mcp', 'mcptrail', 'request_index_local', cityHash64(request_id));

CREATE TABLE IF NOT EXISTS mcptrail.audit_local ON CLUSTER 'mcp' (
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
) ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/mcptrail/audit_local', '{replica}')
PARTITION BY toYYYYMM(ts)
ORDER BY (principal, ts, event_id)
TTL toDateTime(ts) + INTERVAL 400 DAY;

CREATE TABLE IF NOT EXISTS mcptrail.audit ON CLUSTER 'mcp' AS mcptrail.audit_local
ENGINE = Distributed('mcp', 'mcptrail', 'audit_local', cityHash64(principal));

CREATE TABLE IF NOT EXISTS mcptrail.write_tokens_local ON CLUSTER 'mcp' (
    token String,
    ts DateTime,
    events UInt32
) ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/mcptrail/write_tokens_local', '{replica}')
PARTITION BY toYYYYMMDD(ts)
ORDER BY token
TTL toDateTime(ts) + INTERVAL 30 DAY;

CREATE TABLE IF NOT EXISTS mcptrail.write_tokens ON CLUSTER 'mcp' AS mcptrail.write_tokens_local
ENGINE = Distributed('mcp', 'mcptrail', 'write_tokens_local', cityHash64(token));

-- migration 0002_redaction_replay
-- mcptrail:if-missing-column hops_local redaction_version
ALTER TABLE mcptrail.hops_local ON CLUSTER 'mcp' ADD COLUMN redaction_version LowCardinality(String) AFTER config_hash;

-- mcptrail:if-missing-column hops_local redaction_count
ALTER TABLE mcptrail.hops_local ON CLUSTER 'mcp' ADD COLUMN redaction_count UInt16 AFTER redaction_version;

DROP TABLE IF EXISTS mcptrail.hops ON CLUSTER 'mcp';

CREATE TABLE IF NOT EXISTS mcptrail.hops ON CLUSTER 'mcp' AS mcptrail.hops_local
ENGINE = Distributed('mcp', 'mcptrail', 'hops_local', cityHash64(request_id));

CREATE TABLE IF NOT EXISTS mcptrail.replay_runs_local ON CLUSTER 'mcp' (
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
) ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/mcptrail/replay_runs_local', '{replica}')
PARTITION BY toYYYYMM(started)
ORDER BY replay_run_id;

CREATE TABLE IF NOT EXISTS mcptrail.replay_runs ON CLUSTER 'mcp' AS mcptrail.replay_runs_local
ENGINE = Distributed('mcp', 'mcptrail', 'replay_runs_local', cityHash64(replay_run_id));

CREATE TABLE IF NOT EXISTS mcptrail.replay_results_local ON CLUSTER 'mcp' (
    replay_run_id String,
    started DateTime64(6, 'UTC'),
    request_id String,
    tool LowCardinality(String),
    status Enum8('identical' = 1, 'changed' = 2, 'failed' = 3, 'skipped' = 4),
    diff String CODEC(ZSTD(3)),
    error String,
    original_us Int64,
    replay_us Int64
) ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/mcptrail/replay_results_local', '{replica}')
PARTITION BY toYYYYMM(started)
ORDER BY (replay_run_id, request_id);

CREATE TABLE IF NOT EXISTS mcptrail.replay_results ON CLUSTER 'mcp' AS mcptrail.replay_results_local
ENGINE = Distributed('mcp', 'mcptrail', 'replay_results_local', cityHash64(replay_run_id));

-- migration 0003_request_index_view
CREATE MATERIALIZED VIEW IF NOT EXISTS mcptrail.request_index_mv_local ON CLUSTER 'mcp' TO mcptrail.request_index_local AS
SELECT
    id,
    CAST(kind_name AS Enum8('request' = 1, 'trace' = 2, 'session' = 3)) AS kind,
    request_id,
    min(ts) AS ts,
    min(ts_ns) AS min_ts_ns,
    max(ts_ns) AS max_ts_ns
FROM mcptrail.hops_local
ARRAY JOIN [request_id, trace_id, session_id] AS id, ['request', 'trace', 'session'] AS kind_name
WHERE request_id != '' AND id != ''
GROUP BY id, kind_name, request_id;

-- migration 0006_tool_pins
CREATE TABLE IF NOT EXISTS mcptrail.tool_pins_local ON CLUSTER 'mcp' (
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
) ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/mcptrail/tool_pins_local', '{replica}')
PARTITION BY toYYYYMM(ts)
ORDER BY (server, tool, ts_ns, kind, hash);

CREATE TABLE IF NOT EXISTS mcptrail.tool_pins ON CLUSTER 'mcp' AS mcptrail.tool_pins_local
ENGINE = Distributed('mcp', 'mcptrail', 'tool_pins_local', cityHash64(server, tool));

-- migration 0007_audit_roles
-- mcptrail:if-missing-column audit_local roles
ALTER TABLE mcptrail.audit_local ON CLUSTER 'mcp' ADD COLUMN roles Array(String) AFTER rule;

DROP TABLE IF EXISTS mcptrail.audit ON CLUSTER 'mcp';

CREATE TABLE IF NOT EXISTS mcptrail.audit ON CLUSTER 'mcp' AS mcptrail.audit_local
ENGINE = Distributed('mcp', 'mcptrail', 'audit_local', cityHash64(principal));

