// Package examples holds the demo pages that `stardust --demo` serves at
// {base}/demo/: an index, a chat over Bayeux (chat.html, answered by the
// autobot package's reply bot), a live Stardust channel with the curl
// commands to publish to it (live.html) and the server's live counts
// (status.html), all on the embedded client {base}/js/stardust.js.
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
