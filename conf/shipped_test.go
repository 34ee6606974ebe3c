package conf

import (
	"path/filepath"
	"testing"
)

// TestShippedConfigsHaveNoWarning: every configuration the repository ships
// (conf/*.toml, examples/config/*.toml) is valid and starts without a
// warning, so that a first run shows none and the defaults are the safe ones.
func TestShippedConfigsHaveNoWarning(t *testing.T) {
	var files []string
	for _, glob := range []string{"*.toml", "../examples/config/*.toml"} {
		m, err := filepath.Glob(glob)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, m...)
	}
	if len(files) < 9 {
		t.Fatalf("found %d shipped configurations: %v", len(files), files)
	}
	for _, file := range files {
		c, err := Parse(file)
		if err != nil {
			t.Errorf("%s: %v", file, err)
			continue
		}
		if c.Server.DocumentRoot != "" {
			c.Server.DocumentRoot = t.TempDir() // the site's files exist where it is deployed
		}
		if err := c.Validate(); err != nil {
			t.Errorf("%s: %v", file, err)
		}
		for _, w := range c.Warnings() {
			t.Errorf("%s warns: %s", file, w)
		}
	}
}
