// Package examples holds the demo pages that `stardust --demo` serves at
// {base}/demo/: a page that subscribes to a channel with long polling or
// Server-Sent Events and publishes to it.
package examples

import (
	"embed"
	"io/fs"
)

//go:embed demo
var demo embed.FS

// Demo returns the demo pages as a file system rooted at the demo folder.
func Demo() fs.FS {
	sub, err := fs.Sub(demo, "demo")
	if err != nil {
		panic(err) // the folder is embedded at build time; it cannot be missing
	}
	return sub
}
