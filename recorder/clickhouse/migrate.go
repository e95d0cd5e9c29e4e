package clickhouse

import (
	"context"
	"fmt"
	"time"
)

// Migrate brings the schema to the newest embedded version: it creates the
// database and schema_migrations when missing, applies every migration not
// recorded there in version order, and records each one after all of its
// statements succeeded. Every statement is idempotent (IF NOT EXISTS, or an
// ADD COLUMN guarded by a system.columns check), so a migration interrupted
// half-way is simply re-run. Running Migrate on an up-to-date schema is a
// no-op. On servers with TTL, table TTLs are then brought in line with
// Config.Retention (MODIFY TTL / REMOVE TTL) when it changed. Concurrent Migrate calls from several gateways are safe for the
// same reason, apart from a harmless duplicate schema_migrations row.
func (s *Store) Migrate(ctx context.Context) error {
	return s.migrateTo(ctx, ^uint32(0))
}

// SchemaVersion returns the newest applied migration version, 0 when none.
func (s *Store) SchemaVersion(ctx context.Context) (uint32, error) {
	applied, err := s.appliedVersions(ctx)
	if err != nil {
		return 0, err
	}
	var v uint32
	for k := range applied {
		v = max(v, k)
	}
	return v, nil
}

func (s *Store) migrateTo(ctx context.Context, target uint32) error {
	// The bootstrap (a pair of IF NOT EXISTS) runs unless schema_migrations
	// already lists every migration up to target: ON CLUSTER, even an IF
	// NOT EXISTS waits for every replica (up to the server's
	// distributed_ddl_task_timeout, 180 s), so a gateway starting while a
	// replica is down would not record at all.
	applied, err := s.appliedVersions(ctx)
	if err != nil || pending(applied, target) {
		if err := s.applyMigration(ctx, migrations[0]); err != nil {
			return err
		}
		if applied, err = s.appliedVersions(ctx); err != nil {
			return err
		}
	}
	for _, m := range migrations[1:] {
		if m.Version > target || applied[m.Version] {
			continue
		}
		start := time.Now()
		if err := s.applyMigration(ctx, m); err != nil {
			return err
		}
		text, _ := m.render(s.cfg, s.features)
		if err := s.recordMigration(ctx, m, checksum(text)); err != nil {
			return err
		}
		s.log.Info("applied ClickHouse migration", "migration", m.Name, "elapsed", time.Since(start))
	}
	// The writer looks again for the request_index view and the audit
	// roles it may just have created.
	s.indexView.forget()
	s.auditRoles.forget()
	return s.syncTTL(ctx)
}

// pending reports whether a migration up to target is missing from applied.
func pending(applied map[uint32]bool, target uint32) bool {
	for _, m := range migrations[1:] {
		if m.Version <= target && !applied[m.Version] {
			return true
		}
	}
	return false
}

func (s *Store) applyMigration(ctx context.Context, m migration) error {
	text, err := m.render(s.cfg, s.features)
	if err != nil {
		return err
	}
	stmts, err := splitStatements(text)
	if err != nil {
		return fmt.Errorf("splitting migration %s: %w", m.Name, err)
	}
	for i, st := range stmts {
		if st.IfMissingColumn != "" {
			var n uint64
			err := s.conn.QueryRow(ctx, "SELECT count() FROM system.columns WHERE database = ? AND table = ? AND name = ?",
				s.cfg.Database, st.IfMissingTable, st.IfMissingColumn).Scan(&n)
			if err != nil {
				return fmt.Errorf("migration %s statement %d: checking column %s.%s: %w", m.Name, i+1, st.IfMissingTable, st.IfMissingColumn, err)
			}
			if n > 0 {
				continue
			}
		}
		if err := s.conn.Exec(ctx, st.SQL); err != nil {
			return fmt.Errorf("migration %s statement %d (%.60s...): %w", m.Name, i+1, st.SQL, err)
		}
	}
	return nil
}

func (s *Store) appliedVersions(ctx context.Context) (map[uint32]bool, error) {
	rows, err := s.conn.Query(ctx, "SELECT DISTINCT version FROM "+s.cfg.Database+".schema_migrations")
	if err != nil {
		return nil, fmt.Errorf("reading schema_migrations: %w", err)
	}
	defer rows.Close()
	applied := map[uint32]bool{}
	for rows.Next() {
		var v uint32
		if err := rows.Scan(&v); err != nil {
			return nil, fmt.Errorf("reading schema_migrations: %w", err)
		}
		applied[v] = true
	}
	return applied, rows.Err()
}

func (s *Store) recordMigration(ctx context.Context, m migration, sum string) error {
	b, err := s.conn.PrepareBatch(ctx, "INSERT INTO "+s.cfg.Database+".schema_migrations (version, name, checksum, applied)")
	if err != nil {
		return fmt.Errorf("recording migration %s: %w", m.Name, err)
	}
	defer b.Abort()
	if err := b.Append(m.Version, m.Name, sum, time.Now()); err != nil {
		return fmt.Errorf("recording migration %s: %w", m.Name, err)
	}
	if err := b.Send(); err != nil {
		return fmt.Errorf("recording migration %s: %w", m.Name, err)
	}
	return nil
}
