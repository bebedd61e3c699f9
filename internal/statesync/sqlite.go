package statesync

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	_ "modernc.org/sqlite" // pure Go: the binary stays static
)

// SQLiteCopier returns a snapshot.SaveOptions.ConsistentCopy that writes a
// transaction-consistent copy of a SQLite database with VACUUM INTO, which
// reads the database in one read transaction: a writer in the middle of a
// transaction is neither blocked for long nor half-captured. Copies go to
// scratchDir (the system temp dir when empty).
func SQLiteCopier(scratchDir string) func(ctx context.Context, path string) (string, error) {
	return func(ctx context.Context, path string) (string, error) {
		f, err := os.CreateTemp(scratchDir, "tether-sqlite-*.db")
		if err != nil {
			return "", err
		}
		dst := f.Name()
		f.Close()
		os.Remove(dst) // VACUUM INTO wants a path that does not exist
		// busy_timeout: wait out a writer's commit instead of failing.
		db, err := sql.Open("sqlite", "file:"+filepath.ToSlash(path)+"?_pragma=busy_timeout(10000)&_txlock=deferred")
		if err != nil {
			return "", err
		}
		defer db.Close()
		db.SetMaxOpenConns(1)
		if _, err := db.ExecContext(ctx, "VACUUM INTO '"+strings.ReplaceAll(dst, "'", "''")+"'"); err != nil {
			os.Remove(dst)
			return "", fmt.Errorf("copy of SQLite database %s: %w", path, err)
		}
		return dst, nil
	}
}
