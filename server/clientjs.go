package server

import (
	"bytes"
	"crypto/sha256"
	_ "embed" // the browser client is part of the binary
	"encoding/hex"
	"net/http"
	"time"

	"github.com/gorilla/mux"
)

// stardustJS is the browser client, served at {base}/js/stardust.js.
//
//go:embed js/stardust.js
var stardustJS []byte

// ClientJSVersion is the version of the embedded stardust.js: the start of
// the SHA-256 of its text, so that it changes whenever the file does. Pages
// load {base}/js/stardust.js?v=VERSION (ClientJSURL) to be cached for a year;
// without ?v= the file is revalidated by its ETag on every load.
var ClientJSVersion = func() string {
	sum := sha256.Sum256(stardustJS)
	return hex.EncodeToString(sum[:8])
}()

// ClientJSURL returns the versioned URL of stardust.js on this server.
func (s *Server) ClientJSURL() string {
	return s.opts.Base + "/js/stardust.js?v=" + ClientJSVersion
}

// clientRoutes registers what pages use besides the API: the browser
// client, the live counts (stats.go) and who is on a channel (presence.go).
func (s *Server) clientRoutes(r *mux.Router) {
	r.HandleFunc(s.opts.Base+"/js/stardust.js", s.serveClientJS).Methods(http.MethodGet, http.MethodHead).Name("clientjs")
	r.HandleFunc(s.opts.Base+"/stats", s.handleStats).Methods(http.MethodGet, http.MethodHead).Name("stats")
	r.HandleFunc(s.opts.Base+"/presence", s.handlePresence).Methods(http.MethodGet, http.MethodHead).Name("presence")
}

// serveClientJS answers with the client, an ETag (so a revalidation costs a
// 304), and caching that depends on the URL: a year and immutable for the
// URL of this version, "no-cache" (revalidate every time) otherwise, so that
// an unversioned URL never serves a stale client after an upgrade.
//
// The unversioned answer (200 or 304) also gives a browser that has none its
// BAYEUX_BROWSER cookie (owner.go): a page that loads the script has the
// cookie before its clients start their requests at once, each of which
// would otherwise be answered with a cookie of its own, the browser keeping
// only the last, and the sessions bound to the others would stop working.
// The versioned answer may be cached by proxies, so it never sets one.
func (s *Server) serveClientJS(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Type", "text/javascript; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("ETag", `"`+ClientJSVersion+`"`)
	if r.URL.Query().Get("v") == ClientJSVersion {
		h.Set("Cache-Control", "public, max-age=31536000, immutable")
	} else {
		h.Set("Cache-Control", "private, no-cache")
		s.rules.ensureBrowser(h, r, s.opts.Base)
	}
	http.ServeContent(w, r, "stardust.js", time.Time{}, bytes.NewReader(stardustJS))
}
