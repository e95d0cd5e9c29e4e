package clickhouse

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/mcptrail/mcptrail/recorder"
)

// Store is the recorder pipeline's storage.
var _ recorder.Writer = (*Store)(nil)

const hopsColumns = "event_id, request_id, session_id, trace_id, span_id, hop, seq, ts, ts_ns, " +
	"duration_us, queue_us, connect_us, ttfb_us, method, server, target, rpc_id, " +
	"principal, auth_decision, auth_rule, route_rule, backend, attempt, fallback, " +
	"outcome, error_code, error_message, request_bytes, response_bytes, " +
	"client_name, client_version, protocol_version, upstream_version, " +
	"gateway_instance, gateway_version, config_hash, redaction_version, redaction_count, " +
	"has_params, has_result, attr_keys, attr_values"

const payloadColumns = "event_id, request_id, ts, params, result, truncated, params_sha256, result_sha256"

const indexColumns = "id, kind, request_id, ts, min_ts_ns, max_ts_ns"

const auditColumns = "ts, ts_ns, event_id, request_id, session_id, trace_id, principal, method, server, target, " +
	"decision, rule, outcome, error_code, error_message, duration_us, client_name"

// auditRolesColumns are auditColumns with migration 0007's roles.
const auditRolesColumns = auditColumns + ", roles"

// WriteBatch stores evs durably. It implements the recorder's writer
// contract: it returns nil only once every row is acknowledged by the
// server, and it is idempotent per token — a batch whose token was already
// written is acknowledged without writing, and where the server supports
// insert_deduplication_token a retry racing an earlier partial attempt is
// dropped by the server too. Duplicates that still slip through (a crash
// between the rows and the token) collapse on event_id in every read.
// An empty token disables the token check. WriteBatch does not retain evs.
//
// The client sends hops, payloads and audit rows; request_index rows are
// derived by the server from the hops insert (migration 0003), or sent by
// the client too on a schema that predates that view.
func (s *Store) WriteBatch(ctx context.Context, token string, evs []recorder.Event) error {
	if len(evs) == 0 {
		return nil
	}
	return s.WriteChunks(ctx, token, func(yield func([]recorder.Event) error) error { return yield(evs) })
}

var _ recorder.StreamWriter = (*Store)(nil)

// WriteChunks is WriteBatch for a batch read chunk by chunk: each table
// gets one INSERT of the whole batch (one part, however many chunks), sent
// a block at a time as chunks goes over the batch once per table. Audit
// rows are built chunk by chunk: a request's hops split across two chunks
// lend each other no fields, as across two batches (the response hop
// carries what the audit row needs).
func (s *Store) WriteChunks(ctx context.Context, token string, chunks recorder.Chunks) error {
	if token != "" {
		var n uint64
		if err := s.conn.QueryRow(ctx, "SELECT count() FROM "+s.table("write_tokens")+" WHERE token = ?", token).Scan(&n); err != nil {
			return fmt.Errorf("checking batch token %s: %w", token, err)
		}
		if n > 0 {
			s.log.Debug("batch already written", "token", token)
			return nil
		}
	}
	serverIndex, err := s.serverDerivesIndex(ctx)
	if err != nil {
		return err
	}
	withRoles, err := s.auditHasRoles(ctx)
	if err != nil {
		return err
	}
	auditCols, fillAudit := auditColumns, appendAudit
	if withRoles {
		auditCols, fillAudit = auditRolesColumns, appendAuditRoles
	}
	// One table after the other: in parallel, each insert held its own
	// connection's column and compression buffers at once (the gateway's
	// peak memory) for no measurable gain in throughput on a small
	// machine, where the server's work, not the round trips, is the limit.
	inserts := []tableInsert{
		{"hops", hopsColumns, inBlocks(appendHops)},
		{"payloads", payloadColumns, inBlocks(appendPayloads)},
		{"audit", auditCols, fillAudit},
	}
	if !serverIndex {
		inserts = append(inserts, tableInsert{"request_index", indexColumns, appendIndex})
	}
	events := 0
	for i, in := range inserts {
		n, err := s.insert(ctx, token, in.table, in.columns, chunks, in.fill)
		if err != nil {
			return err
		}
		if i == 0 {
			events = n // a hops row per event
		}
	}
	if token != "" && events > 0 {
		_, err := s.insert(ctx, token, "write_tokens", "token, ts, events", one, func(b driver.Batch, _ []recorder.Event) (int, error) {
			return 1, b.Append(token, time.Now(), uint32(events))
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// one is a batch of one empty chunk, for an insert that needs no events.
func one(yield func([]recorder.Event) error) error { return yield(nil) }

// schemaFact caches one fact about the schema that a migration may change
// under a running writer (the request_index view exists, audit has roles).
// A fact found true is remembered for the life of the Store; a false one
// is looked up again after schemaRecheck, so that a schema migrated by hand
// while the gateway runs is noticed without a restart.
type schemaFact struct {
	mu      sync.Mutex
	known   bool
	holds   bool
	checked time.Time
}

const schemaRecheck = time.Minute

func (v *schemaFact) forget() {
	v.mu.Lock()
	v.known = false
	v.mu.Unlock()
}

// get returns the cached fact, or asks lookup; warn is logged when the
// fact is first found false.
func (v *schemaFact) get(lookup func() (bool, error), warn func()) (bool, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.known && (v.holds || time.Since(v.checked) < schemaRecheck) {
		return v.holds, nil
	}
	ok, err := lookup()
	if err != nil {
		return false, err
	}
	if !ok && (!v.known || v.holds) {
		warn()
	}
	v.known, v.holds, v.checked = true, ok, time.Now()
	return ok, nil
}

// serverDerivesIndex reports whether the server fills request_index from
// hops inserts, so that the client must not send those rows.
func (s *Store) serverDerivesIndex(ctx context.Context) (bool, error) {
	return s.indexView.get(func() (bool, error) {
		_, name, _ := cutStorage(s.storageTable("request_index_mv"))
		var n uint64
		err := s.conn.QueryRow(ctx, "SELECT count() FROM system.tables WHERE database = ? AND name = ?", s.cfg.Database, name).Scan(&n)
		if err != nil {
			return false, fmt.Errorf("looking for the request_index view %s: %w", name, err)
		}
		return n > 0, nil
	}, func() {
		s.log.Warn("schema predates migration 0003: the writer sends request_index rows itself; run mcptrail migrate",
			"database", s.cfg.Database)
	})
}

// auditHasRoles reports whether the audit table has migration 0007's roles
// column; without it the writer leaves the roles out.
func (s *Store) auditHasRoles(ctx context.Context) (bool, error) {
	return s.auditRoles.get(func() (bool, error) {
		_, name, _ := cutStorage(s.storageTable("audit"))
		var n uint64
		err := s.conn.QueryRow(ctx, "SELECT count() FROM system.columns WHERE database = ? AND table = ? AND name = 'roles'", s.cfg.Database, name).Scan(&n)
		if err != nil {
			return false, fmt.Errorf("looking for the roles column of %s: %w", name, err)
		}
		return n > 0, nil
	}, func() {
		s.log.Warn("schema predates migration 0007: audit rows are written without roles; run mcptrail migrate",
			"database", s.cfg.Database)
	})
}

// errColumnCount: the table's columns are not the ones the writer fills.
var errColumnCount = errors.New("schema mismatch")

type appendFunc func(driver.Batch, []recorder.Event) (rows int, err error)

// tableInsert is one table's share of a batch: its columns and how to
// fill them from the events.
type tableInsert struct {
	table, columns string
	fill           appendFunc
}

// insertBlockEvents bounds how many events' rows the client encodes into
// one block: a batch goes out as several blocks of one INSERT, which the
// server squashes into one part (min_insert_block_size_rows), so that the
// client's column buffers and its connection's compression buffer hold a
// couple of thousand rows rather than the whole batch. (The server
// squashes up to min_insert_block_size_bytes, 256 MiB: a batch of payloads
// larger than that becomes several parts, split where the client's blocks
// end.) 512 allocated a quarter less per batch for the same CPU, but with
// it TestE2EClickHouseCluster's exactly-once accounting (the rows the
// replicas' part logs record as inserted) came up 134 short once, when a
// replica was stopped in the middle of a batch: every event was stored
// exactly once, but the log lacked the blocks the stopped replica had
// committed. Until that is understood the blocks stay at 2,048, which
// passed it in every run.
const insertBlockEvents = 2048

// inBlocks makes fill send the rows of every insertBlockEvents events as
// a block of their own. fill must not need the other events of the batch
// (appendAudit does: it is not split).
func inBlocks(fill appendFunc) appendFunc {
	return func(b driver.Batch, evs []recorder.Event) (int, error) {
		total := 0
		for len(evs) > 0 {
			part := evs[:min(len(evs), insertBlockEvents)]
			evs = evs[len(part):]
			n, err := fill(b, part)
			total += n
			if err != nil {
				return total, err
			}
			if len(evs) > 0 && b.Rows() > 0 {
				if err := b.Flush(); err != nil {
					return total, &flushError{err}
				}
			}
		}
		return total, nil
	}
}

// flushError is a failure to send a block, as opposed to one to encode it.
type flushError struct{ err error }

func (e *flushError) Error() string { return "sending a block: " + e.err.Error() }
func (e *flushError) Unwrap() error { return e.err }

// insert sends one INSERT into table of the rows fill makes from every
// chunk of chunks, flushing a block between chunks, and returns how many
// rows it sent.
func (s *Store) insert(ctx context.Context, token, table, columns string, chunks recorder.Chunks, fill appendFunc) (int, error) {
	settings := clickhouse.Settings{}
	if token != "" && s.features.DedupToken {
		settings["insert_deduplication_token"] = token + "/" + table
	}
	if s.cfg.Cluster != "" {
		// Rows for a shard with no replica on this server would otherwise
		// be queued on its disk and sent later: the ack would precede
		// durability. (On a replica of the only shard, the layout tested
		// here, ClickHouse writes into the local replicated table
		// synchronously either way.)
		settings["insert_distributed_sync"] = 1
	}
	if len(settings) > 0 {
		ctx = clickhouse.Context(ctx, clickhouse.WithSettings(settings))
	}
	b, err := s.conn.PrepareBatch(ctx, "INSERT INTO "+s.table(table)+" ("+columns+")")
	if err != nil {
		return 0, fmt.Errorf("preparing insert into %s: %w", table, err)
	}
	defer b.Abort()
	n := 0
	err = chunks(func(evs []recorder.Event) error {
		if b.Rows() > 0 {
			if err := b.Flush(); err != nil {
				return &flushError{err}
			}
		}
		k, err := fill(b, evs)
		n += k
		if err != nil {
			return &fillError{err}
		}
		return nil
	})
	var (
		flushErr *flushError
		fillErr  *fillError
	)
	switch {
	case err == nil:
	case errors.As(err, &flushErr):
		return n, classify(fmt.Errorf("inserting rows into %s: %w", table, err))
	case errors.As(err, &fillErr) && errors.Is(fillErr.err, errColumnCount):
		// The table is not the one this writer knows: every batch fails
		// alike until the schema is migrated, so retry rather than
		// quarantine them all.
		return n, fmt.Errorf("appending rows to %s: %w", table, fillErr.err)
	case errors.As(err, &fillErr):
		// The driver refuses a value it cannot encode: the same rows will
		// be refused again.
		return n, recorder.Permanent(fmt.Errorf("appending rows to %s: %w", table, fillErr.err))
	default:
		// The batch's source failed (reading the spool): retry.
		return n, fmt.Errorf("reading the batch for %s: %w", table, err)
	}
	if n == 0 {
		return 0, nil
	}
	if err := b.Send(); err != nil {
		return n, classify(fmt.Errorf("inserting %d rows into %s: %w", n, table, err))
	}
	return n, nil
}

// fillError is a failure to make or send the rows of a chunk, as opposed
// to one of the chunks' source.
type fillError struct{ err error }

func (e *fillError) Error() string { return e.err.Error() }
func (e *fillError) Unwrap() error { return e.err }

func b2u(b bool) uint8 {
	if b {
		return 1
	}
	return 0
}

// appendHops fills the hops batch column by column: one typed slice per
// column instead of ~40 boxed values per row, which is most of the client's
// CPU at 10k-row batches.
func appendHops(b driver.Batch, evs []recorder.Event) (int, error) {
	n := len(evs)
	h := hopColumnsPool.Get().(*hopColumns)
	defer h.put()
	h.resize(n)
	var (
		eventID, requestID, sessionID, traceID, spanID = h.eventID, h.requestID, h.sessionID, h.traceID, h.spanID
		hop, outcome                                   = h.hop, h.outcome
		seq, reqBytes, respBytes                       = h.seq, h.reqBytes, h.respBytes
		ts                                             = h.ts
		tsNs                                           = h.tsNs
		dur, queue, connect, ttfb                      = h.dur, h.queue, h.connect, h.ttfb
		method, server, target, rpcID                  = h.method, h.server, h.target, h.rpcID
		principal, decision, rule, routeRule, backend  = h.principal, h.decision, h.rule, h.routeRule, h.backend
		attempt, fallback, hasParams, hasResult        = h.attempt, h.fallback, h.hasParams, h.hasResult
		errCode                                        = h.errCode
		errMsg                                         = h.errMsg
		clientName, clientVersion, protocol, upstream  = h.clientName, h.clientVersion, h.protocol, h.upstream
		instance, gwVersion, configHash, redactVersion = h.instance, h.gwVersion, h.configHash, h.redactVersion
		redactCount                                    = h.redactCount
		attrKeys, attrValues                           = h.attrKeys, h.attrValues
	)
	// Every event's attribute keys and values are slices of two shared
	// backing arrays: two allocations per batch instead of two per event.
	nAttrs := 0
	for i := range evs {
		nAttrs += len(evs[i].Attrs)
	}
	h.allKeys, h.allVals = sized(h.allKeys, nAttrs)[:0], sized(h.allVals, nAttrs)[:0]
	allKeys, allVals := h.allKeys, h.allVals
	for i := range evs {
		e := &evs[i]
		eventID[i], requestID[i], sessionID[i], traceID[i], spanID[i] = e.EventID, e.RequestID, e.SessionID, e.TraceID, e.SpanID
		hop[i], outcome[i] = enumValue(uint8(e.Hop), 7), enumValue(uint8(e.Outcome), 4)
		seq[i], reqBytes[i], respBytes[i] = e.Seq, e.RequestBytes, e.ResponseBytes
		ts[i], tsNs[i] = time.Unix(0, e.TimeNs), uint64(e.TimeNs)
		dur[i], queue[i], connect[i], ttfb[i] = e.DurationUs, e.QueueUs, e.ConnectUs, e.TTFBUs
		method[i], server[i], target[i], rpcID[i] = e.Method, e.Server, e.Target, e.RPCID
		principal[i], decision[i], rule[i], routeRule[i], backend[i] = e.Principal, e.AuthDecision, e.AuthRule, e.RouteRule, e.Backend
		attempt[i], fallback[i], hasParams[i], hasResult[i] = e.Attempt, b2u(e.Fallback), b2u(e.Params != nil), b2u(e.Result != nil)
		errCode[i], errMsg[i] = e.ErrorCode, e.ErrorMessage
		clientName[i], clientVersion[i], protocol[i], upstream[i] = e.ClientName, e.ClientVersion, e.ProtocolVersion, e.UpstreamVersion
		instance[i], gwVersion[i], configHash[i], redactVersion[i] = e.GatewayInstance, e.GatewayVersion, e.ConfigHash, e.RedactionVersion
		redactCount[i] = e.RedactionCount
		from := len(allKeys)
		for _, a := range e.Attrs {
			allKeys, allVals = append(allKeys, a.Key), append(allVals, a.Value)
		}
		attrKeys[i], attrValues[i] = allKeys[from:len(allKeys):len(allKeys)], allVals[from:len(allVals):len(allVals)]
	}
	h.allKeys, h.allVals = allKeys, allVals
	// Same order as hopsColumns.
	cols := []any{eventID, requestID, sessionID, traceID, spanID, hop, seq, ts, tsNs,
		dur, queue, connect, ttfb, method, server, target, rpcID,
		principal, decision, rule, routeRule, backend, attempt, fallback,
		outcome, errCode, errMsg, reqBytes, respBytes,
		clientName, clientVersion, protocol, upstream,
		instance, gwVersion, configHash, redactVersion, redactCount,
		hasParams, hasResult, attrKeys, attrValues}
	if got := len(b.Columns()); got != len(cols) {
		return 0, fmt.Errorf("%w: hops batch has %d columns, writer fills %d", errColumnCount, got, len(cols))
	}
	for i, c := range cols {
		if err := b.Column(i).Append(c); err != nil {
			return 0, fmt.Errorf("column %d of hops: %w", i, err)
		}
	}
	return n, nil
}

// hopColumns are appendHops' typed columns, pooled from one block to the
// next: the driver copies what Append is given, so the slices are free
// again once it returns (a 512-event block made 40 of them, ~280 KB).
type hopColumns struct {
	eventID, requestID, sessionID, traceID, spanID []string
	hop, outcome                                   []int8
	seq, reqBytes, respBytes                       []uint32
	ts                                             []time.Time
	tsNs                                           []uint64
	dur, queue, connect, ttfb                      []int64
	method, server, target, rpcID                  []string
	principal, decision, rule, routeRule, backend  []string
	attempt, fallback, hasParams, hasResult        []uint8
	errCode                                        []int32
	errMsg                                         []string
	clientName, clientVersion, protocol, upstream  []string
	instance, gwVersion, configHash, redactVersion []string
	redactCount                                    []uint16
	attrKeys, attrValues                           [][]string
	allKeys, allVals                               []string
}

var hopColumnsPool = sync.Pool{New: func() any { return new(hopColumns) }}

// sized returns s with length n, reallocated only when it is too short.
func sized[T any](s []T, n int) []T {
	if cap(s) < n {
		return make([]T, n)
	}
	return s[:n]
}

// stringCols points at the string columns (one row each per event).
func (h *hopColumns) stringCols() [23]*[]string {
	return [...]*[]string{&h.eventID, &h.requestID, &h.sessionID, &h.traceID, &h.spanID, &h.method, &h.server,
		&h.target, &h.rpcID, &h.principal, &h.decision, &h.rule, &h.routeRule, &h.backend, &h.errMsg, &h.clientName,
		&h.clientVersion, &h.protocol, &h.upstream, &h.instance, &h.gwVersion, &h.configHash, &h.redactVersion}
}

// resize gives every column n rows.
func (h *hopColumns) resize(n int) {
	for _, c := range h.stringCols() {
		*c = sized(*c, n)
	}
	h.hop, h.outcome = sized(h.hop, n), sized(h.outcome, n)
	h.seq, h.reqBytes, h.respBytes = sized(h.seq, n), sized(h.reqBytes, n), sized(h.respBytes, n)
	h.ts, h.tsNs = sized(h.ts, n), sized(h.tsNs, n)
	h.dur, h.queue, h.connect, h.ttfb = sized(h.dur, n), sized(h.queue, n), sized(h.connect, n), sized(h.ttfb, n)
	h.attempt, h.fallback, h.hasParams, h.hasResult = sized(h.attempt, n), sized(h.fallback, n), sized(h.hasParams, n), sized(h.hasResult, n)
	h.errCode, h.redactCount = sized(h.errCode, n), sized(h.redactCount, n)
	h.attrKeys, h.attrValues = sized(h.attrKeys, n), sized(h.attrValues, n)
}

// put returns h to the pool without the strings it pointed to (they point
// into the spool segment being written).
func (h *hopColumns) put() {
	cols := h.stringCols()
	for _, c := range append(cols[:], &h.allKeys, &h.allVals) {
		clear((*c)[:cap(*c)])
	}
	clear(h.attrKeys[:cap(h.attrKeys)])
	clear(h.attrValues[:cap(h.attrValues)])
	hopColumnsPool.Put(h)
}

// enumValue maps an out-of-range Hop or Outcome to 0 (unknown / ok) rather
// than failing the whole batch on an enum the schema does not know.
func enumValue(v, maxValid uint8) int8 {
	if v > maxValid {
		return 0
	}
	return int8(v)
}

// appendPayloads writes one row per event that carries a body, column by
// column. The bodies go in with AppendRow([]byte), which copies them into
// the column once, without a string conversion in between.
func appendPayloads(b driver.Batch, evs []recorder.Event) (int, error) {
	n := 0
	for i := range evs {
		if evs[i].Params != nil || evs[i].Result != nil {
			n++
		}
	}
	if n == 0 {
		return 0, nil
	}
	var (
		eventID, requestID = make([]string, 0, n), make([]string, 0, n)
		ts                 = make([]time.Time, 0, n)
		truncated          = make([]uint8, 0, n)
		paramsSum, resSum  = make([]string, 0, n), make([]string, 0, n)
	)
	params, result := b.Column(3), b.Column(4)
	for i := range evs {
		e := &evs[i]
		if e.Params == nil && e.Result == nil {
			continue
		}
		eventID, requestID = append(eventID, e.EventID), append(requestID, e.RequestID)
		ts, truncated = append(ts, time.Unix(0, e.TimeNs)), append(truncated, b2u(e.PayloadTruncated))
		paramsSum, resSum = append(paramsSum, e.ParamsSHA256), append(resSum, e.ResultSHA256)
		if err := params.AppendRow(e.Params); err != nil {
			return 0, fmt.Errorf("params of event %s: %w", e.EventID, err)
		}
		if err := result.AppendRow(e.Result); err != nil {
			return 0, fmt.Errorf("result of event %s: %w", e.EventID, err)
		}
	}
	// Same order as payloadColumns; 3 and 4 (params, result) are filled above.
	if got := len(b.Columns()); got != 8 {
		return 0, fmt.Errorf("%w: payloads batch has %d columns, writer fills 8", errColumnCount, got)
	}
	for _, c := range []struct {
		idx int
		v   any
	}{{0, eventID}, {1, requestID}, {2, ts}, {5, truncated}, {6, paramsSum}, {7, resSum}} {
		if err := b.Column(c.idx).Append(c.v); err != nil {
			return 0, fmt.Errorf("column %d of payloads: %w", c.idx, err)
		}
	}
	return n, nil
}

type span struct{ min, max int64 }

// appendIndex writes one row per request id, trace id and session id seen in
// the batch with the batch's time window for that request.
func appendIndex(b driver.Batch, evs []recorder.Event) (int, error) {
	type key struct{ id, kind, req string }
	spans := map[key]span{}
	var order []key
	add := func(k key, ts int64) {
		if sp, ok := spans[k]; ok {
			spans[k] = span{min(sp.min, ts), max(sp.max, ts)}
			return
		}
		spans[k] = span{ts, ts}
		order = append(order, k)
	}
	for i := range evs {
		e := &evs[i]
		if e.RequestID == "" {
			continue
		}
		add(key{e.RequestID, "request", e.RequestID}, e.TimeNs)
		if e.TraceID != "" {
			add(key{e.TraceID, "trace", e.RequestID}, e.TimeNs)
		}
		if e.SessionID != "" {
			add(key{e.SessionID, "session", e.RequestID}, e.TimeNs)
		}
	}
	for _, k := range order {
		sp := spans[k]
		if err := b.Append(k.id, k.kind, k.req, time.Unix(0, sp.min), uint64(sp.min), uint64(sp.max)); err != nil {
			return 0, fmt.Errorf("request %s: %w", k.req, err)
		}
	}
	return len(order), nil
}

// appendAudit writes one row per response hop, plus one per denied auth hop
// of a request that never became a call (no method, no response: the
// gateway refused the HTTP request before parsing it). Fields the response
// hop leaves empty (principal, decision, method...) are taken from the
// other hops of the same request in the batch; the proxy records a
// request's hops together, so they normally are.
//
// The hops of a request are chained in batch order (next[i] is the next
// hop of evs[i]'s request, -1 at the end): a map lookup only where the
// request id changes from one event to the next, no slice per request.
func appendAudit(b driver.Batch, evs []recorder.Event) (int, error) {
	return fillAuditRows(b, evs, false)
}

// appendAuditRoles is appendAudit with the principal's roles (the auth
// hop's recorder.AttrAuthRoles) in a last column.
func appendAuditRoles(b driver.Batch, evs []recorder.Event) (int, error) {
	return fillAuditRows(b, evs, true)
}

func fillAuditRows(b driver.Batch, evs []recorder.Event, withRoles bool) (int, error) {
	type request struct {
		first, last int32
		hasResponse bool
	}
	var (
		reqs  []request
		byID  = map[string]int32{}
		group = make([]int32, len(evs)) // request index of each event
		next  = make([]int32, len(evs))
	)
	for i := range evs {
		e := &evs[i]
		next[i] = -1
		var r int32
		if i > 0 && evs[i-1].RequestID == e.RequestID {
			r = group[i-1]
		} else if known, ok := byID[e.RequestID]; ok {
			r = known
		} else {
			r = int32(len(reqs))
			byID[e.RequestID] = r
			reqs = append(reqs, request{first: int32(i), last: -1})
		}
		group[i] = r
		if last := reqs[r].last; last >= 0 {
			next[last] = int32(i)
		}
		reqs[r].last = int32(i)
		if e.Hop == recorder.HopResponse {
			reqs[r].hasResponse = true
		}
	}
	var (
		ts                                     []time.Time
		tsNs                                   []uint64
		eventID, requestID, sessionID, traceID []string
		principal, method, server, target      []string
		decision, rule, errMsg, clientName     []string
		roles                                  [][]string
		outcome                                []int8
		errCode                                []int32
		duration                               []int64
	)
	for i := range evs {
		e := &evs[i]
		refused := e.Hop == recorder.HopAuth && e.AuthDecision == "denied" && e.Method == "" && !reqs[group[i]].hasResponse
		if e.Hop != recorder.HopResponse && !refused {
			continue
		}
		p, dec, rl, rs := e.Principal, e.AuthDecision, e.AuthRule, e.Roles()
		m, srv, tgt, client := e.Method, e.Server, e.Target, e.ClientName
		for j := reqs[group[i]].first; j >= 0; j = next[j] {
			o := &evs[j]
			fill(&p, o.Principal)
			if o.Hop == recorder.HopAuth || dec == "" {
				// The auth hop's decision wins over copies on other hops.
				if o.Hop == recorder.HopAuth && o.AuthDecision != "" {
					dec, rl = o.AuthDecision, o.AuthRule
					if r := o.Roles(); r != nil {
						rs = r
					}
				} else {
					fill(&dec, o.AuthDecision)
					fill(&rl, o.AuthRule)
				}
			}
			fill(&m, o.Method)
			fill(&srv, o.Server)
			fill(&tgt, o.Target)
			fill(&client, o.ClientName)
		}
		ts, tsNs = append(ts, time.Unix(0, e.TimeNs)), append(tsNs, uint64(e.TimeNs))
		eventID, requestID = append(eventID, e.EventID), append(requestID, e.RequestID)
		sessionID, traceID = append(sessionID, e.SessionID), append(traceID, e.TraceID)
		principal, method, server, target = append(principal, p), append(method, m), append(server, srv), append(target, tgt)
		decision, rule = append(decision, dec), append(rule, rl)
		if rs == nil {
			rs = []string{}
		}
		roles = append(roles, rs)
		outcome, errCode = append(outcome, enumValue(uint8(e.Outcome), 4)), append(errCode, e.ErrorCode)
		errMsg, duration, clientName = append(errMsg, e.ErrorMessage), append(duration, e.DurationUs), append(clientName, client)
	}
	if len(ts) == 0 {
		return 0, nil
	}
	// Same order as auditColumns.
	cols := []any{ts, tsNs, eventID, requestID, sessionID, traceID, principal, method, server, target,
		decision, rule, outcome, errCode, errMsg, duration, clientName}
	if withRoles {
		cols = append(cols, roles)
	}
	if got := len(b.Columns()); got != len(cols) {
		return 0, fmt.Errorf("%w: audit batch has %d columns, writer fills %d", errColumnCount, got, len(cols))
	}
	for i, c := range cols {
		if err := b.Column(i).Append(c); err != nil {
			return 0, fmt.Errorf("column %d of audit: %w", i, err)
		}
	}
	return len(ts), nil
}

func fill(dst *string, v string) {
	if *dst == "" {
		*dst = v
	}
}
