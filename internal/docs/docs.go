// Package docs reads the project's documentation, README.md and the pages
// under docs/, as one text, for the tests that run or quote its snippets:
// a snippet may live on any page and still be found (and still be found
// once, where a test wants exactly one).
package docs

import (
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// Files returns the documentation files under the repository root: README.md
// first, then docs/*.md in name order.
func Files(root string) ([]string, error) {
	pages, err := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	if err != nil {
		return nil, err
	}
	sort.Strings(pages)
	return append([]string{filepath.Join(root, "README.md")}, pages...), nil
}

// Read returns README.md and every docs/*.md under root, joined by blank
// lines, each page ending in a newline, so that a heading or a code block
// never runs across two pages.
func Read(root string) (string, error) {
	files, err := Files(root)
	if err != nil {
		return "", err
	}
	var all strings.Builder
	for i, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return "", err
		}
		if i > 0 {
			all.WriteString("\n")
		}
		all.Write(b)
		if len(b) > 0 && b[len(b)-1] != '\n' {
			all.WriteString("\n")
		}
	}
	return all.String(), nil
}
