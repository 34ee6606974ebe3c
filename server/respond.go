package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
)

// setJSONHeaders marks a response as uncachable, unbuffered JSON: the headers
// every Stardust JSON answer carries, so that proxies pass it on at once.
func setJSONHeaders(h http.Header) {
	h["Content-Type"] = hdrJSON
	h["Cache-Control"] = hdrNoStore
	h["X-Accel-Buffering"] = hdrNo
}

// Header values set as they are, shared by every response (nothing changes
// a header value in place), so that setting them allocates nothing.
var (
	hdrJSON    = []string{"application/json"}
	hdrNoStore = []string{"no-store"}
	hdrNo      = []string{"no"}
)

// writeJSON encodes v as the response body with status.
func writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		status, body = http.StatusInternalServerError, []byte(`{"error":"internal error"}`)
	}
	_ = writeRawJSON(w, status, body)
}

// writeRawJSON writes body, already JSON, with status. An error says the
// body did not reach the connection.
func writeRawJSON(w http.ResponseWriter, status int, body []byte) error {
	setJSONHeaders(w.Header())
	w.WriteHeader(status)
	if _, err := w.Write(body); err != nil {
		return err
	}
	_, err := w.Write([]byte("\n"))
	return err
}

// smallBody is the largest body readBody reads at its announced length.
const smallBody = 8 << 10

// readBody reads a request body up to MaxBodyBytes: beyond it the error
// wraps ErrTooLarge (413), any other failure ErrBadMessage.
func (rr requestRules) readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	if n := r.ContentLength; n >= 0 && n <= min(rr.MaxBodyBytes, smallBody) && r.Body != nil {
		// A small length given and within the limit (every Bayeux
		// connect): read into a body of that size, in one allocation.
		// net/http's body reader ends at that length, and reports a body
		// cut short. (Not for a large one: memory for bytes not sent.)
		body := make([]byte, n)
		if _, err := io.ReadFull(r.Body, body); err != nil {
			return nil, fmt.Errorf("%w: reading body: %v", ErrBadMessage, err)
		}
		return body, nil
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, rr.MaxBodyBytes))
	if err != nil {
		if mbe := (*http.MaxBytesError)(nil); errors.As(err, &mbe) {
			return nil, fmt.Errorf("%w: body over %d bytes", ErrTooLarge, mbe.Limit)
		}
		return nil, fmt.Errorf("%w: reading body: %v", ErrBadMessage, err)
	}
	return body, nil
}

// quoteCut quotes what a client sent, to name it in an error: its first n
// bytes, escaped as a Go string, with "..." after the quote when it was
// longer, so that an error never echoes a whole request line back.
func quoteCut(s string, n int) string {
	if len(s) <= n {
		return strconv.Quote(s)
	}
	return strconv.Quote(s[:n]) + "..."
}

// maxErrorText bounds the text of an error answer: it may name what the
// client sent (a channel name, a path), which a request line can make 1 MiB
// long; the client needs only enough to recognise it.
const maxErrorText = 512

// cutErrorText is msg cut to maxErrorText bytes, with a marker.
func cutErrorText(msg string) string { return cutTo(msg, maxErrorText) }

// errorBody is the JSON of every error answer.
type errorBody struct {
	Error  string `json:"error"`
	Status int    `json:"status"`
}

// engineUnavailable is all a client learns of a failure of the engine:
// the error names the engine's server (Redis's address) and what went wrong
// there, which the incidents summary logs instead.
const engineUnavailable = "engine unavailable, retry"

// writeError answers with the status httpStatus maps err to and a JSON body
// naming the problem. Internal errors and engine failures are shown as a
// short message only.
func writeError(w http.ResponseWriter, err error) {
	status := httpStatus(err)
	msg := err.Error()
	switch {
	case status == http.StatusInternalServerError:
		msg = "internal error"
	case errors.Is(err, ErrEngine):
		msg = engineUnavailable
	default:
		msg = cutErrorText(msg)
	}
	if errors.Is(err, ErrMethod) {
		w.Header().Set("Allow", "GET, HEAD, POST")
	}
	setRetryAfter(w.Header(), err)
	writeJSON(w, status, errorBody{Error: msg, Status: status})
}

// jsonArray writes items, each already JSON, as one JSON array.
func jsonArray(items [][]byte) []byte {
	return appendJSONArray(make([]byte, 0, jsonArrayLen(items)), items)
}

// jsonArrayLen is the length of items as one JSON array.
func jsonArrayLen(items [][]byte) int {
	n := 2 + max(len(items)-1, 0) // brackets and commas
	for _, it := range items {
		n += len(it)
	}
	return n
}

// appendJSONArray appends items, each already JSON, as one JSON array.
func appendJSONArray(out []byte, items [][]byte) []byte {
	out = append(out, '[')
	for i, it := range items {
		if i > 0 {
			out = append(out, ',')
		}
		out = append(out, it...)
	}
	return append(out, ']')
}
