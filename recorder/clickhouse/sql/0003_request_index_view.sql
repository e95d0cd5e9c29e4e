-- v3: request_index is derived by the server from each hops insert.
--
-- Until v2 the writer sent request_index rows itself, a third of its CPU
-- per event. This materialized view computes the same rows from the block
-- of hops being inserted: one row per (id, kind, request) seen in it, with
-- the time window of that request's hops in the block. Hops without a
-- request id, and empty trace or session ids, are skipped, as before.
-- The writer checks that this view exists before it stops sending the rows
-- itself, so a database migrated by hand later loses no index rows; rows
-- written by both during an upgrade are harmless (readers take min/max).
-- A single SELECT level with no subquery: ClickHouse 18.16 feeds a view's
-- outermost FROM with the inserted block.
CREATE MATERIALIZED VIEW IF NOT EXISTS {{tbl "request_index_mv"}}{{onCluster}} TO {{tbl "request_index"}} AS
SELECT
    id,
    CAST(kind_name AS Enum8('request' = 1, 'trace' = 2, 'session' = 3)) AS kind,
    request_id,
    min(ts) AS ts,
    min(ts_ns) AS min_ts_ns,
    max(ts_ns) AS max_ts_ns
FROM {{tbl "hops"}}
ARRAY JOIN [request_id, trace_id, session_id] AS id, ['request', 'trace', 'session'] AS kind_name
WHERE request_id != '' AND id != ''
GROUP BY id, kind_name, request_id;
