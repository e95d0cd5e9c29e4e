// Package clickhouse stores recorder events in ClickHouse and answers the
// three questions mcptrail is asked most:
//
//  1. everything about one request (or trace, or session) — Trace: the narrow
//     request_index table maps an id to request ids and a time window, then
//     hops (ordered by request_id) and payloads are read for that window;
//  2. failed calls in a window by server or tool — Calls, and
//  3. a principal's activity over months — Audit; both read the narrow audit
//     table (one row per answered request) that outlives hop and payload
//     retention.
//
// The schema is a series of embedded text/template .sql migrations rendered
// for the server's own capabilities (see Features): the base renders on
// ClickHouse 18.16 (the only server installable on the CI machines), modern
// servers get DateTime64, LowCardinality, CODECs, TTL and bloom-filter skip
// indexes, and a configured cluster gets ON CLUSTER DDL, Replicated*MergeTree
// local tables and Distributed tables under the plain names. DDL renders the
// full script for review. A migration that adds columns to a table ALTERs
// its storage table ({{tbl "t"}}{{onCluster}}) and then creates the
// Distributed table again ({{redist "t" "shard key"}}): 18.16 refuses an
// ALTER ... ON CLUSTER of a Distributed table in a replicated cluster.
// TestCluster runs every migration on a real two-replica cluster.
//
// A batch (a whole spool segment, WriteChunks) is written as three inserts
// one after the other (hops, payloads, audit), each filled column by column
// and sent a block at a time as the batch's chunks are read, so that it
// makes one part per table; then its token. The chunks' events share the
// pipeline's buffer: the inserts must stay sequential. request_index is derived
// by the server from the hops insert (a materialized view, migration 0003),
// which takes a third of the writer's CPU off the gateway; on a schema
// migrated only to v2 the writer still sends those rows itself.
//
// Writes are idempotent twice over: a batch token already recorded in
// write_tokens is not written again (and insert_deduplication_token is sent
// where the server knows it), and every event table is a ReplacingMergeTree
// keyed by event_id. Hops are read with FINAL; calls and audit rows, whose
// pages span millions of rows, without it, dropping the adjacent copies of
// an event in Go (Store.readPage), newest-first pages window by window.
//
// The store's own connection is deliberately not traced: no spans are made
// for, or propagated into, queries about writing traces.
package clickhouse
