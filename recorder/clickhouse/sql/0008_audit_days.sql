-- v8: audit rows counted per day, for the audit page's chart.
--
-- Counting a month of audit rows for everyone reads millions of rows (a
-- second per month at 10 M calls on 18.16); this table holds one row per
-- principal, day, tool, decision and rule, summed as parts merge, so that
-- 90 days read a few hundred thousand rows, and one principal's days a few
-- granules (the audit page reads them to plan its first rows; a window of
-- days for everyone skips whole months, as on audit). Readers
-- (Store.AuditDays, Store.Audit) take the base table instead for what it
-- cannot answer: a role filter, a window starting or ending inside a day,
-- and the day this migration ran and the day before (see below).
CREATE TABLE IF NOT EXISTS {{tbl "audit_days"}}{{onCluster}} (
    day Date,
    principal String,
    server {{lc}},
    target {{lc}},
    decision {{lc}},
    rule {{lc}},
    calls UInt64
) ENGINE = {{engine "SummingMergeTree" "audit_days"}}
PARTITION BY toYYYYMM(day)
ORDER BY (principal, day, target, decision, rule, server){{ttl "day" .Retention.Audit}};
{{dist "audit_days" "cityHash64(principal)"}}

-- The rows recorded so far, counted once: these three statements run only
-- while the view below does not exist, so that a migration interrupted
-- before it (the backfill may take a minute) starts the count again from
-- an empty table, and one interrupted after it does not count twice.
-- Written straight into this server's storage table: the sums read through
-- the Distributed table are the same whichever shard holds them. Rows that
-- reach audit between the backfill's read and the view's creation count
-- nowhere; they belong to the day the migration ran or the day before
-- (unless a gateway's spool held them back longer), which readers count
-- from audit.
-- mcptrail:if-missing-column {{name "audit_days_mv"}} day
TRUNCATE TABLE IF EXISTS {{tbl "audit_days"}}{{onCluster}};

-- mcptrail:if-missing-column {{name "audit_days_mv"}} day
INSERT INTO {{tbl "audit_days"}} (day, principal, server, target, decision, rule, calls)
SELECT toDate(ts) AS day, principal, server, target, decision, rule, count() AS calls
FROM {{db}}.audit
GROUP BY day, principal, server, target, decision, rule;

-- From now on each insert into audit adds its counts. A single SELECT level
-- (ClickHouse 18.16 feeds a view's outermost FROM with the inserted block).
-- mcptrail:if-missing-column {{name "audit_days_mv"}} day
CREATE MATERIALIZED VIEW IF NOT EXISTS {{tbl "audit_days_mv"}}{{onCluster}} TO {{tbl "audit_days"}} AS
SELECT toDate(ts) AS day, principal, server, target, decision, rule, count() AS calls
FROM {{tbl "audit"}}
GROUP BY day, principal, server, target, decision, rule;
