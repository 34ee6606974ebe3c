package server

import (
	"encoding/json"
	"fmt"
	"strconv"
	"time"
)

// The Stardust JSON forms of a message and of the notices Stardust clients
// get (polls and SSE): protocol encodings, kept out of Message.

// encodingStardust is the slot of a message's encodings (Message.encoded)
// that holds its Stardust JSON object (stardustJSON).
const encodingStardust encodingKind = 0

// unixSeconds is the Stardust _ts form of a time: epoch seconds with microseconds.
func unixSeconds(t time.Time) float64 { return float64(t.UnixMicro()) / 1e6 }

// stampObject sets _ts and _ch on obj and encodes it compactly.
func stampObject(obj map[string]json.RawMessage, t time.Time, channel string) []byte {
	obj["_ts"] = json.RawMessage(strconv.FormatFloat(unixSeconds(t), 'f', -1, 64))
	ch, _ := json.Marshal(channel)
	obj["_ch"] = ch
	out, _ := json.Marshal(obj) // keys sorted; values are valid JSON already
	return out
}

// overflowJSON is the reserved Stardust message that tells a client how many
// of its queued messages were dropped because it fell behind.
func overflowJSON(lost int, t time.Time) []byte {
	return []byte(fmt.Sprintf(`{"type":"stardust.overflow","lost":%d,"_ts":%s}`,
		lost, strconv.FormatFloat(unixSeconds(t), 'f', -1, 64)))
}

// resetJSON is the notice a Stardust stream gets when the engine lost its
// session and queue (a shared engine that came back empty): messages may
// have been lost; ?since= or Last-Event-ID can recover them from history.
func resetJSON(t time.Time) []byte {
	return []byte(fmt.Sprintf(`{"type":"stardust.reset","_ts":%s}`, strconv.FormatFloat(unixSeconds(t), 'f', -1, 64)))
}
