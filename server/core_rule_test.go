package server

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// The core (the hub, clients, engines, messages, channels and the delivery
// seam) knows no connection, system call or wire format: those are
// internal/takeover's (connections taken over, WebSocket frames) and the
// protocols' files (Stardust, Bayeux, SSE encodings). Issue 22.

// coreFiles are the files of the core, as globs.
var coreFiles = []string{"hub.go", "client.go", "delivery*.go", "engine*.go", "message.go", "channel.go", "local.go"}

// coreForbiddenImports are packages the core must not import.
var coreForbiddenImports = []string{"net", "syscall", "github.com/gorilla/websocket", "github.com/stardust-go/stardust/internal/takeover"}

// coreForbiddenNames match identifiers the core must not name: a
// connection taken over, WebSocket frames and sockets.
var coreForbiddenNames = regexp.MustCompile(`heldConn|takeoverConn|[Ff]rame|[Ww]eb[Ss]ocket|^ws[A-Z]|[Ss]yscall|RawConn|Hijack`)

// messageForbiddenNames match identifiers message.go must not name: the
// protocols' encodings live in their own files.
var messageForbiddenNames = regexp.MustCompile(`(?i)stardust|bayeux|sse|websocket|overflow|reset|stamp`)

func TestCoreNamesNoConnectionOrWire(t *testing.T) {
	fset := token.NewFileSet()
	seen := 0
	for _, glob := range coreFiles {
		names, err := filepath.Glob(glob)
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range names {
			if strings.HasSuffix(name, "_test.go") {
				continue
			}
			seen++
			f, err := parser.ParseFile(fset, name, nil, parser.SkipObjectResolution)
			if err != nil {
				t.Fatal(err)
			}
			for _, imp := range f.Imports {
				path, _ := strconv.Unquote(imp.Path.Value)
				for _, bad := range coreForbiddenImports {
					if path == bad {
						t.Errorf("%s imports %q: the core knows no connection or wire (internal/takeover, the protocols' files)", fset.Position(imp.Pos()), path)
					}
				}
			}
			ast.Inspect(f, func(n ast.Node) bool {
				id, ok := n.(*ast.Ident)
				if !ok {
					return true
				}
				if coreForbiddenNames.MatchString(id.Name) {
					t.Errorf("%s names %s: connections and WebSocket frames are internal/takeover's", fset.Position(id.Pos()), id.Name)
				}
				if name == "message.go" && messageForbiddenNames.MatchString(id.Name) {
					t.Errorf("%s names %s: a protocol's encoding of a message is in that protocol's file", fset.Position(id.Pos()), id.Name)
				}
				return true
			})
		}
	}
	if seen < 7 {
		t.Fatalf("read %d core files: the list is out of date", seen)
	}
}
