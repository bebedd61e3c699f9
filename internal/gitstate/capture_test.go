package gitstate

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/tether-dev/tether/internal/gitstate/gittest"
)

func TestOrdinaryRepo(t *testing.T) {
	repo := newRepo(t)
	gittest.OrdinaryChanges(t, repo)
	e := newEnv(t)
	res := e.capture(repo)
	if !res.Full || res.Bundle == "" {
		t.Fatalf("first capture: full %v bundle %q, want a full bundle", res.Full, res.Bundle)
	}
	compareRepos(t, repo, e.restore())
	for _, f := range []string{"debug.log", "build/out.o"} {
		if _, err := os.Stat(filepath.Join(e.restore(), f)); !os.IsNotExist(err) {
			t.Errorf("ignored file %s was restored (%v)", f, err)
		}
	}
}
