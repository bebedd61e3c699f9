package demo

import (
	"fmt"

	"github.com/tether-dev/tether/test/modelserver"
)

// Prompt is the demo session's initial prompt; its cue starts the script.
const Prompt = "[tether-demo] Build a small Go command-line app in repos/demo-app (a git repository), then load-test it."

// Markers the scripted commands print; the model server answers each with the
// next step, and the demo checks the transcript for them.
const (
	markBuilt    = "DEMO-BUILD-OK"
	markSurvived = "DEMO-HOG-SURVIVED"
	markChecked  = "DEMO-CHECK-OK"
	markFinished = "DEMO-FINISH-OK"
	// The runner's notice after a resume of an interrupted turn contains this.
	cueInterrupted = "previous turn was interrupted"
	// FinalText ends the session's last turn.
	FinalText = "All done: the app is built and committed, and the work in progress survived the crash. [tether-demo] finished"
)

// RepoDir is the project's directory, relative to the workspace.
const RepoDir = "repos/demo-app"

// buildCommand creates the project with every kind of state a snapshot
// must keep: two commits, a staged change, an unstaged change, an untracked
// file and a binary file (deterministic bytes, so a check can name them).
const buildCommand = `set -e
mkdir -p repos/demo-app && cd repos/demo-app
git init -q -b main
git config user.email agent@tether.demo && git config user.name "demo agent"
cat > go.mod <<'MOD'
module example.com/demo-app

go 1.22
MOD
cat > main.go <<'GO'
package main

import "fmt"

func main() { fmt.Println(greeting("world")) }
GO
cat > greet.go <<'GO'
package main

func greeting(name string) string { return "hello, " + name }
GO
git add -A && git commit -qm "demo-app: hello world"
printf '# demo-app\n\nPrints a greeting.\n' > README.md
git add README.md && git commit -qm "demo-app: README"
printf '\n## Usage\n\n    go run .\n' >> README.md && git add README.md
printf '// TODO: greet in French too\n' >> greet.go
printf 'notes: try a load test next\n' > NOTES.txt
awk 'BEGIN { for (i = 0; i < 4096; i++) printf "%c", (i * 7 + 3) % 256 }' > logo.bin
git log --oneline && git status --short && echo ` + markBuilt

// Steps is the model's script for a session in workspace. tether is the absolute path of the tether
// binary (its hidden `demo hog` allocates memory until the kernel stops it)
// and hogMiB how much the hog tries to take.
func Steps(tether, workspace string, hogMiB int) []modelserver.Step {
	T := modelserver.Text
	// The CLI's Bash tool keeps the working directory from one call to the
	// next: every command starts from the workspace.
	B := func(cmd string) modelserver.Block { return modelserver.Bash(fmt.Sprintf("cd %q && ", workspace) + cmd) }
	return []modelserver.Step{
		// Most specific first: a request's latest user message may carry
		// more than one marker.
		{Cue: markFinished, Reply: []modelserver.Block{T(FinalText)}},
		{Cue: markChecked, Reply: []modelserver.Block{T("Everything from before the crash is there. Writing the report."),
			B("mkdir -p artifacts && (cd repos/demo-app && git log --oneline && git status --short) > artifacts/demo-report.txt && echo " + markFinished)}},
		{Cue: cueInterrupted, Reply: []modelserver.Block{T("My last command was interrupted. Let me check the repository first."),
			B("cd repos/demo-app && git log --oneline && git status --short && sha256sum logo.bin && echo " + markChecked)}},
		{Cue: markSurvived, Reply: []modelserver.Block{T("The load test finished without running out of memory."),
			B("echo " + markChecked)}},
		{Cue: markBuilt, Reply: []modelserver.Block{T("The app is built: two commits, a staged README change, a TODO in greet.go, notes and a logo. Now the load test, which needs a lot of memory."),
			B(fmt.Sprintf("%q demo hog --mib %d && echo %s", tether, hogMiB, markSurvived))}},
		{Cue: "[tether-demo] Build", Reply: []modelserver.Block{T("I'll create the project with git."), B(buildCommand)}},
	}
}
