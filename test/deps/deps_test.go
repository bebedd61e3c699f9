// Package deps checks that every external program the code and its tests
// run is either part of every machine this project runs on or installed by
// a make target. A new machine has nothing that was installed by hand: when
// a test starts calling a program that no make target installs, this test
// fails here, naming it, instead of `make test` failing on the next fresh
// machine while CI passes on an old one (rclone did exactly that).
package deps

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// provided says where each program comes from. "machine" programs are on
// every machine of this project's kind when it is new (the machine's
// description lists them); the others are installed by the make target
// named, which `make test` runs first (TEST_DEPS).
var provided = map[string]string{
	"git":    "machine (Debian's git)",
	"bash":   "machine",
	"sh":     "machine",
	"cp":     "machine (coreutils)",
	"true":   "machine (coreutils)",
	"uname":  "machine (coreutils); the benchmark report's machine line",
	"go":     "machine (the Go toolchain that builds tether)",
	"npm":    "machine (Node.js and npm); used by hack/install-claude.sh and hack/install-agui.sh",
	"node":   "machine (Node.js); runs the official AG-UI client (hack/install-agui.sh) in TestAGUIConformance",
	"rclone": "make rclone (hack/install-rclone.sh, into $(CACHE)/bin)",
}

// execFuncs are the os/exec functions whose first program argument names
// what runs (after the context, for CommandContext).
var execFuncs = map[string]int{"Command": 0, "CommandContext": 1, "LookPath": 0}

func TestEveryProgramHasAnInstaller(t *testing.T) {
	root := repoRoot(t)
	files := goFiles(t, root)
	found := map[string][]string{} // program -> places
	wrappers := map[string]int{}   // func name -> index of its program parameter
	parsed := map[string]*ast.File{}
	fset := token.NewFileSet()
	for _, f := range files {
		af, err := parser.ParseFile(fset, f, nil, 0)
		if err != nil {
			t.Fatalf("parse %s: %v", f, err)
		}
		parsed[f] = af
		findWrappers(af, filepath.Dir(f), wrappers)
	}
	for f, af := range parsed {
		rel, _ := filepath.Rel(root, f)
		ast.Inspect(af, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok {
				return true
			}
			idx := -1
			switch fn := call.Fun.(type) {
			case *ast.SelectorExpr:
				if x, ok := fn.X.(*ast.Ident); ok && x.Name == "exec" {
					if i, ok := execFuncs[fn.Sel.Name]; ok {
						idx = i
					}
				}
			case *ast.Ident:
				if i, ok := wrappers[filepath.Dir(f)+"."+fn.Name]; ok && fn.Obj != nil && fn.Obj.Kind == ast.Fun {
					idx = i
				}
			}
			if idx < 0 || idx >= len(call.Args) {
				return true
			}
			lit, ok := call.Args[idx].(*ast.BasicLit)
			if !ok || lit.Kind != token.STRING {
				return true
			}
			prog, err := strconv.Unquote(lit.Value)
			if err != nil || strings.Contains(prog, "/") {
				return true // a path the code builds or ships is not an external program
			}
			found[prog] = append(found[prog], rel+":"+strconv.Itoa(fset.Position(lit.Pos()).Line))
			return true
		})
	}
	if len(found) == 0 {
		t.Fatal("found no program calls at all: the scan is broken")
	}
	var progs []string
	for p := range found {
		progs = append(progs, p)
	}
	sort.Strings(progs)
	for _, p := range progs {
		from, ok := provided[p]
		if !ok {
			t.Errorf("%s runs %q, which no make target installs and a new machine may lack: add an install script under hack/ to TEST_DEPS, then add it to the table in this test (places: %s)",
				found[p][0], p, strings.Join(found[p], ", "))
			continue
		}
		if _, err := exec.LookPath(p); err != nil {
			msg := "%q (%s) is not on PATH: " + err.Error()
			if os.Getenv("CI") == "true" || strings.HasPrefix(from, "machine") {
				t.Errorf(msg, p, from)
			} else {
				t.Logf(msg+" (run the tests through `make test`, which installs it)", p, from)
			}
		}
		t.Logf("%-7s %-60s %d call sites", p, from, len(found[p]))
	}
	for p := range provided {
		if _, ok := found[p]; !ok {
			t.Errorf("the table names %q but nothing runs it any more: remove it", p)
		}
	}
}

// findWrappers records the functions of a file that pass one of their own
// string parameters to exec as the program (run(ctx, env, name, args...)),
// so calls to them count too.
func findWrappers(af *ast.File, pkgDir string, wrappers map[string]int) {
	for _, d := range af.Decls {
		fd, ok := d.(*ast.FuncDecl)
		if !ok || fd.Body == nil {
			continue
		}
		params := map[string]int{}
		i := 0
		for _, field := range fd.Type.Params.List {
			for _, name := range field.Names {
				if id, ok := field.Type.(*ast.Ident); ok && id.Name == "string" {
					params[name.Name] = i
				}
				i++
			}
			if len(field.Names) == 0 {
				i++
			}
		}
		ast.Inspect(fd.Body, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok {
				return true
			}
			sel, ok := call.Fun.(*ast.SelectorExpr)
			if !ok {
				return true
			}
			x, ok := sel.X.(*ast.Ident)
			idx, isExec := execFuncs[sel.Sel.Name]
			if !ok || x.Name != "exec" || !isExec || idx >= len(call.Args) {
				return true
			}
			if arg, ok := call.Args[idx].(*ast.Ident); ok {
				if pi, ok := params[arg.Name]; ok {
					wrappers[pkgDir+"."+fd.Name.Name] = pi
				}
			}
			return true
		})
	}
}

func repoRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the test's directory")
		}
		dir = parent
	}
}

func goFiles(t *testing.T, root string) []string {
	t.Helper()
	var files []string
	err := filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			switch d.Name() {
			case ".git", "node_modules", "testdata", "hack":
				return filepath.SkipDir // hack/tools are separate modules building tools
			}
			return nil
		}
		if strings.HasSuffix(p, ".go") {
			files = append(files, p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}
