-- v1: hops, payloads, the request index, the audit trail and batch tokens.

-- One row per recorder.Event. Ordered by request so that "everything about
-- one request" reads a few granules; ReplacingMergeTree on event_id is the
-- backstop against retried batches (read with FINAL).
CREATE TABLE IF NOT EXISTS {{tbl "hops"}}{{onCluster}} (
    event_id String,
    request_id String,
    session_id String,
    trace_id String,
    span_id String,
    hop Enum8('unknown' = 0, 'inbound' = 1, 'auth' = 2, 'route' = 3, 'upstream' = 4, 'response' = 5, 'notification' = 6, 'server_request' = 7),
    seq UInt32,
    ts {{ts}},
    ts_ns UInt64{{codec "Delta, ZSTD(1)"}},
    duration_us Int64{{codec "T64, ZSTD(1)"}},
    queue_us Int64{{codec "T64, ZSTD(1)"}},
    connect_us Int64{{codec "T64, ZSTD(1)"}},
    ttfb_us Int64{{codec "T64, ZSTD(1)"}},
    method {{lc}},
    server {{lc}},
    target {{lc}},
    rpc_id String,
    principal {{lc}},
    auth_decision {{lc}},
    auth_rule {{lc}},
    route_rule {{lc}},
    backend {{lc}},
    attempt UInt8,
    fallback UInt8,
    outcome Enum8('ok' = 0, 'tool_error' = 1, 'jsonrpc_error' = 2, 'transport_error' = 3, 'denied' = 4),
    error_code Int32,
    error_message String{{codec "ZSTD(1)"}},
    request_bytes UInt32,
    response_bytes UInt32,
    client_name {{lc}},
    client_version {{lc}},
    protocol_version {{lc}},
    upstream_version {{lc}},
    gateway_instance {{lc}},
    gateway_version {{lc}},
    config_hash {{lc}},
    has_params UInt8,
    has_result UInt8,
    attr_keys Array(String),
    attr_values Array(String){{index "idx_trace_id" "trace_id"}}{{index "idx_session_id" "session_id"}}
) ENGINE = {{engine "ReplacingMergeTree" "hops"}}
PARTITION BY toYYYYMMDD(ts)
ORDER BY (request_id, event_id){{ttl "ts" .Retention.Hops}}{{settings}};
{{dist "hops" "cityHash64(request_id)"}}

-- Request and response bodies, kept apart so that their (shorter) retention
-- and size never slow the hop queries.
CREATE TABLE IF NOT EXISTS {{tbl "payloads"}}{{onCluster}} (
    event_id String,
    request_id String,
    ts {{ts}},
    params String{{codec "ZSTD(3)"}},
    result String{{codec "ZSTD(3)"}},
    truncated UInt8,
    params_sha256 String,
    result_sha256 String
) ENGINE = {{engine "ReplacingMergeTree" "payloads"}}
PARTITION BY toYYYYMMDD(ts)
ORDER BY (request_id, event_id){{ttl "ts" .Retention.Payloads}}{{settings}};
{{dist "payloads" "cityHash64(request_id)"}}

-- id (a request, trace or session id) -> request ids and their time window.
-- Several rows per request are fine: readers take min/max.
CREATE TABLE IF NOT EXISTS {{tbl "request_index"}}{{onCluster}} (
    id String,
    kind Enum8('request' = 1, 'trace' = 2, 'session' = 3),
    request_id String,
    ts {{ts}},
    min_ts_ns UInt64,
    max_ts_ns UInt64
) ENGINE = {{engine "MergeTree" "request_index"}}
PARTITION BY toYYYYMMDD(ts)
ORDER BY (id, request_id){{ttl "ts" .Retention.Hops}}{{settings}};
{{dist "request_index" "cityHash64(request_id)"}}

-- One row per answered request (its response hop), narrow so that months of
-- a principal's activity stay cheap after hops and payloads are gone.
CREATE TABLE IF NOT EXISTS {{tbl "audit"}}{{onCluster}} (
    ts {{ts}},
    ts_ns UInt64,
    event_id String,
    request_id String,
    session_id String,
    trace_id String,
    principal String,
    method {{lc}},
    server {{lc}},
    target {{lc}},
    decision {{lc}},
    rule {{lc}},
    outcome Enum8('ok' = 0, 'tool_error' = 1, 'jsonrpc_error' = 2, 'transport_error' = 3, 'denied' = 4),
    error_code Int32,
    error_message String,
    duration_us Int64,
    client_name {{lc}}{{index "idx_request_id" "request_id"}}
) ENGINE = {{engine "ReplacingMergeTree" "audit"}}
PARTITION BY toYYYYMM(ts)
ORDER BY (principal, ts, event_id){{ttl "ts" .Retention.Audit}}{{settings}};
{{dist "audit" "cityHash64(principal)"}}

-- Tokens of batches already written: a retried batch is acknowledged
-- without being written twice.
CREATE TABLE IF NOT EXISTS {{tbl "write_tokens"}}{{onCluster}} (
    token String,
    ts DateTime,
    events UInt32
) ENGINE = {{engine "ReplacingMergeTree" "write_tokens"}}
PARTITION BY toYYYYMMDD(ts)
ORDER BY token{{ttl "ts" .Retention.Hops}};
{{dist "write_tokens" "cityHash64(token)"}}
