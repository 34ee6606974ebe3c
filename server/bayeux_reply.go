package server

import (
	"encoding/json"
	"strconv"
)

// appendPlain appends the JSON of a reply that needs no escaping, byte for
// byte what json.Marshal writes, without its reflection: every connect
// reply, and most replies to the other meta messages. ok is false, and
// nothing is to be used, for any reply with a string or raw value that
// json.Marshal would escape or check (or a field this writer leaves to it):
// encode then calls json.Marshal.
func (r *bayeuxReply) appendPlain(b []byte) ([]byte, bool) {
	if r.Version != "" || r.SupportedConnectionTypes != nil || r.Subscription != nil || r.Data != nil ||
		!plainString(r.Channel) || !plainString(r.ClientID) || !plainString(r.Error) ||
		!plainRaw(r.ID) || !plainRaw(r.Ext) {
		return nil, false
	}
	if a := r.Advice; a != nil && !plainString(a.Reconnect) {
		return nil, false
	}
	b = append(b, `{"channel":"`...)
	b = append(b, r.Channel...)
	b = append(b, `","successful":`...)
	b = strconv.AppendBool(b, r.Successful)
	if len(r.ID) > 0 {
		b = append(b, `,"id":`...)
		b = append(b, r.ID...)
	}
	if r.ClientID != "" {
		b = append(b, `,"clientId":"`...)
		b = append(b, r.ClientID...)
		b = append(b, '"')
	}
	if r.Error != "" {
		b = append(b, `,"error":"`...)
		b = append(b, r.Error...)
		b = append(b, '"')
	}
	if a := r.Advice; a != nil {
		b = append(b, `,"advice":{`...)
		if a.Reconnect != "" {
			b = append(b, `"reconnect":"`...)
			b = append(b, a.Reconnect...)
			b = append(b, `",`...)
		}
		b = append(b, `"interval":`...)
		b = strconv.AppendInt(b, a.Interval, 10)
		if a.Timeout != 0 {
			b = append(b, `,"timeout":`...)
			b = strconv.AppendInt(b, a.Timeout, 10)
		}
		if a.MultipleClients {
			b = append(b, `,"multiple-clients":true`...)
		}
		b = append(b, '}')
	}
	if len(r.Ext) > 0 {
		b = append(b, `,"ext":`...)
		b = append(b, r.Ext...)
	}
	return append(b, '}'), true
}

// plainString reports whether json.Marshal writes s as it is between quotes:
// printable ASCII without quotes, backslashes or the HTML characters it
// escapes.
func plainString(s string) bool {
	for i := 0; i < len(s); i++ {
		if !plainByte(s[i]) {
			return false
		}
	}
	return true
}

// plainRaw reports whether json.Marshal writes a raw value as it is: valid,
// compact JSON of plain bytes (so nothing to escape or compact away).
func plainRaw(raw json.RawMessage) bool {
	if len(raw) == 0 {
		return true
	}
	for _, c := range raw {
		if c != '"' && !plainByte(c) || c == ' ' {
			return false
		}
	}
	return json.Valid(raw)
}

func plainByte(c byte) bool {
	return c >= 0x20 && c < 0x7f && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&'
}
