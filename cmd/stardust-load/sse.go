package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
)

// eventStream GETs the event stream at u, resuming after *lastID when it is
// set (nil: no resumption), and reads it with readEvents; event gets each
// event's arrival (arrivalOf the connection once the event is read).
func (r *runner) eventStream(ctx context.Context, u string, lastID *string, event func(typ, data []byte, at stamp) error) error {
	var conn net.Conn
	req, _ := http.NewRequestWithContext(connTrace(ctx, &conn), http.MethodGet, u, nil)
	req.Header.Set("Accept", "text/event-stream")
	if lastID != nil && *lastID != "" {
		req.Header.Set("Last-Event-ID", *lastID)
	}
	resp, err := r.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return fmt.Errorf("status %d: %s", resp.StatusCode, bytes.TrimSpace(body))
	}
	return readEvents(resp.Body, lastID, func(typ, data []byte) error { return event(typ, data, arrivalOf(conn)) })
}

// readEvents reads a text/event-stream and calls event with each event's
// type and data (data lines joined by newlines), until the stream or event
// fails; io.EOF is the server ending the stream, reported as nil. lastID
// (nil: ignored) takes every id field, for Last-Event-ID.
func readEvents(body io.Reader, lastID *string, event func(typ, data []byte) error) error {
	br := bufio.NewReaderSize(body, 64<<10)
	var data, typ []byte
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		line = bytes.TrimRight(line, "\r\n")
		field, value, _ := bytes.Cut(line, []byte(":"))
		value = bytes.TrimPrefix(value, []byte(" "))
		switch {
		case len(line) == 0: // end of an event
			if len(data) > 0 {
				if err := event(typ, data); err != nil {
					return err
				}
			}
			data, typ = data[:0], typ[:0]
		case string(field) == "data":
			if len(data) > 0 {
				data = append(data, '\n')
			}
			data = append(data, value...)
		case string(field) == "event":
			typ = append(typ[:0], value...)
		case string(field) == "id" && lastID != nil:
			*lastID = string(bytes.TrimSpace(value))
		}
	}
}
