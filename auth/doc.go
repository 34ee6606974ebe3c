// Package auth tells the core who a client is and what the app beside
// Stardust lets it do (issue 18): signed tokens (JWT), and HTTP callbacks to
// the app (connect, subscribe, publish). It implements server.Authenticator,
// server.SubscribeAuthorizer and server.PublishAuthorizer; cmd/stardust
// builds it from the [auth] section and hands it to the core, which never
// imports this package, so that an embedder who does not use tokens does
// not link a JWT library.
//
// Tokens are checked with github.com/golang-jwt/jwt/v5 against the HMAC
// secret, PEM public keys and the keys of a JWKS URL. Each key is tried
// only for the algorithms of its own kind (an HMAC secret for HS*, an RSA
// key for RS*/PS*, an ECDSA key for the ES* of its curve, an Ed25519 key for
// EdDSA), so that algorithm confusion (an HS256 token "signed" with a
// public RSA key) finds no key; "none" and unknown algorithms are refused
// before any key is looked up.
//
// The JWKS is read here, in some 150 lines of jwks.go and keys.go, rather
// than with github.com/MicahParks/keyfunc/v3: keyfunc brings jwkset (its own
// HTTP client, storage and refresh goroutines) and its own policies for
// failed refreshes, body sizes and redirects, which we would have to audit
// and configure to get what we want anyway: one bounded GET (64 KiB, the
// callback timeout, no redirects, no proxy) to the configured URL only, a
// failed refresh that keeps the last good keys, a refetch on an unknown kid
// at most every 30 s, and the same key-kind rules as the PEM keys. Reading
// RSA, EC and OKP keys is the standard library's work; the parser is fuzzed
// (FuzzParseJWKS).
//
// The callbacks share one HTTP client: every call bounded by
// callback_timeout (an app that is down or slow means refused, with retry
// advice, never a hang), answers read up to 64 KiB, no redirects followed.
// Answers are cached for cache_ttl per browser session (a digest of the
// forwarded headers and the caller's session key), in a bounded LRU, and
// identical questions asked at once make one call (cache.go). See
// README.md beside this file for how the core calls it.
package auth
