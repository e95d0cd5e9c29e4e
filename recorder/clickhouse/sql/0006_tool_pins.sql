-- v6: tool pinning (the rug-pull defence): each tool's pinned definition and
-- its history.
--
-- One row per event of a tool: pinned (first seen), changed (seen differing
-- from its pin, with the diff and what the gateway did) or approved (by an
-- operator, with `mcptrail tools approve`). A tool's pin is its newest
-- pinned or approved row. Kept forever (no TTL, no partition dropped): the
-- table grows by a row per tool and per change. ReplacingMergeTree on the
-- whole key collapses a history batch written twice.
CREATE TABLE IF NOT EXISTS {{tbl "tool_pins"}}{{onCluster}} (
    ts {{ts}},
    ts_ns UInt64,
    server {{lc}},
    tool String,
    kind Enum8('pinned' = 1, 'changed' = 2, 'approved' = 3),
    hash String,
    prev_hash String,
    definition String{{codec "ZSTD(3)"}},
    diff String{{codec "ZSTD(3)"}},
    action {{lc}},
    actor String
) ENGINE = {{engine "ReplacingMergeTree" "tool_pins"}}
PARTITION BY toYYYYMM(ts)
ORDER BY (server, tool, ts_ns, kind, hash);
{{dist "tool_pins" "cityHash64(server, tool)"}}
