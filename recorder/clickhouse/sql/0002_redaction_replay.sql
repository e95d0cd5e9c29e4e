-- v2: redaction bookkeeping on hops; replay runs and their per-request results.

-- mcptrail:if-missing-column {{name "hops"}} redaction_version
ALTER TABLE {{tbl "hops"}}{{onCluster}} ADD COLUMN redaction_version {{lc}} AFTER config_hash;

-- mcptrail:if-missing-column {{name "hops"}} redaction_count
ALTER TABLE {{tbl "hops"}}{{onCluster}} ADD COLUMN redaction_count UInt16 AFTER redaction_version;

-- Cluster: the Distributed table is created again with the new columns.
{{redist "hops" "cityHash64(request_id)"}}

CREATE TABLE IF NOT EXISTS {{tbl "replay_runs"}}{{onCluster}} (
    replay_run_id String,
    started {{ts}},
    finished {{ts}},
    mode {{lc}},
    target String,
    selection String,
    total UInt32,
    identical UInt32,
    changed UInt32,
    failed UInt32,
    skipped UInt32
) ENGINE = {{engine "ReplacingMergeTree" "replay_runs"}}
PARTITION BY toYYYYMM(started)
ORDER BY replay_run_id;
{{dist "replay_runs" "cityHash64(replay_run_id)"}}

CREATE TABLE IF NOT EXISTS {{tbl "replay_results"}}{{onCluster}} (
    replay_run_id String,
    started {{ts}},
    request_id String,
    tool {{lc}},
    status Enum8('identical' = 1, 'changed' = 2, 'failed' = 3, 'skipped' = 4),
    diff String{{codec "ZSTD(3)"}},
    error String,
    original_us Int64,
    replay_us Int64
) ENGINE = {{engine "ReplacingMergeTree" "replay_results"}}
PARTITION BY toYYYYMM(started)
ORDER BY (replay_run_id, request_id);
{{dist "replay_results" "cityHash64(replay_run_id)"}}
