package statesync

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tether-dev/tether/internal/snapshot"
	"github.com/tether-dev/tether/internal/store/storetest"
)

// TestSQLiteWithWriterRunning: while a writer moves money between accounts
// in transactions (the total never changes) on a WAL database, snapshots are
// taken; every one restores to a database that passes integrity_check and
// holds the right total.
func TestSQLiteWithWriterRunning(t *testing.T) {
	ctx := context.Background()
	ws := t.TempDir()
	dbPath := filepath.Join(ws, "state", "agent.db")
	must(t, os.MkdirAll(filepath.Dir(dbPath), 0o755))
	db, err := sql.Open("sqlite", "file:"+dbPath+"?_pragma=journal_mode(wal)&_pragma=busy_timeout(10000)")
	must(t, err)
	defer db.Close()
	db.SetMaxOpenConns(1)
	_, err = db.Exec(`create table acct(id integer primary key, bal integer not null); create table log(id integer primary key, note text)`)
	must(t, err)
	const accounts, total = 50, 50 * 1000
	for i := 0; i < accounts; i++ {
		_, err := db.Exec(`insert into acct(id, bal) values(?, 1000)`, i)
		must(t, err)
	}

	var stop atomic.Bool
	var txs atomic.Int64
	done := make(chan error, 1)
	go func() {
		for i := 0; !stop.Load(); i++ {
			tx, err := db.Begin()
			if err != nil {
				done <- err
				return
			}
			a, b := i%accounts, (i*7+3)%accounts
			tx.Exec(`update acct set bal = bal - 10 where id = ?`, a)
			tx.Exec(`insert into log(note) values(?)`, fmt.Sprintf("transfer %d: %x", i, make([]byte, 200)))
			tx.Exec(`update acct set bal = bal + 10 where id = ?`, b)
			if err := tx.Commit(); err != nil {
				done <- err
				return
			}
			txs.Add(1)
		}
		done <- nil
	}()

	repo := openRepo(t, storetest.FileURL(t.TempDir()), "sqlite")
	saver, err := snapshot.NewSaver(repo, ws, snapshot.SaveOptions{ConsistentCopy: SQLiteCopier(t.TempDir())})
	must(t, err)
	var ids []string
	for i := 0; i < 8; i++ {
		time.Sleep(100 * time.Millisecond)
		st, err := saver.Save(ctx)
		must(t, err)
		if st.SQLite != 1 || len(st.Warnings) > 0 {
			t.Fatalf("save %d: %d databases copied consistently, warnings %q", i, st.SQLite, st.Warnings)
		}
		ids = append(ids, st.ID)
	}
	stop.Store(true)
	must(t, <-done)
	if txs.Load() < 20 {
		t.Fatalf("the writer committed only %d transactions during the saves", txs.Load())
	}
	for _, id := range ids {
		out := filepath.Join(t.TempDir(), "out")
		_, err := snapshot.Restore(ctx, repo, out, snapshot.RestoreOptions{Snapshot: id})
		must(t, err)
		for _, sib := range []string{"-wal", "-shm", "-journal"} {
			if _, err := os.Stat(filepath.Join(out, "state", "agent.db"+sib)); err == nil {
				t.Fatalf("snapshot %s holds agent.db%s beside the consistent copy", id, sib)
			}
		}
		rdb, err := sql.Open("sqlite", "file:"+filepath.Join(out, "state", "agent.db"))
		must(t, err)
		var check string
		must(t, rdb.QueryRow(`pragma integrity_check`).Scan(&check))
		var sum, n int64
		must(t, rdb.QueryRow(`select sum(bal), count(*) from acct`).Scan(&sum, &n))
		rdb.Close()
		if check != "ok" || sum != total || n != accounts {
			t.Fatalf("snapshot %s: integrity %q, total %d over %d accounts, want ok, %d over %d", id, check, sum, n, total, accounts)
		}
	}
	t.Logf("%d snapshots taken during %d transactions all restore to a consistent database", len(ids), txs.Load())
}
