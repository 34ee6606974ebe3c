package server

import (
	"bytes"
	"encoding/json"
	"testing"
)

// checkReplyEncoding holds bayeuxReply.encode, which writes most replies
// itself, to json.Marshal.
func checkReplyEncoding(t *testing.T, r *bayeuxReply) {
	t.Helper()
	want, err := json.Marshal(r)
	if err != nil {
		want = nil
	}
	if got := r.encode(); !bytes.Equal(got, want) {
		t.Fatalf("encode(%+v) = %s, json.Marshal %s", r, got, want)
	}
}

func TestBayeuxReplyEncoding(t *testing.T) {
	for _, r := range []*bayeuxReply{
		{Channel: "/meta/connect", Successful: true, ID: json.RawMessage(`"3"`), ClientID: "abc",
			Advice: &bayeuxAdvice{Reconnect: "retry", Timeout: 30000}},
		{Channel: "/meta/connect", Successful: true, ID: json.RawMessage(`7`), Ext: json.RawMessage(`{"ack":12}`),
			Advice: &bayeuxAdvice{Interval: 2000, MultipleClients: true}},
		{Channel: "/meta/connect", Error: "402:x:unknown client", Advice: &bayeuxAdvice{Reconnect: "handshake"}},
		{Channel: "/a<b>", ID: json.RawMessage(`"<&>"`)},
		{Channel: "/x", ID: json.RawMessage(`{ "a" : 1 }`)},
		{Channel: "/x", ID: json.RawMessage(`{`)},
		{Channel: "/x", Error: "é\u2028\"\\"},
		{Channel: "/meta/handshake", Version: "1.0", SupportedConnectionTypes: []string{"long-polling"}},
		{Channel: "/meta/subscribe", Subscription: json.RawMessage(`"/x"`), Successful: true},
	} {
		checkReplyEncoding(t, r)
	}
}

func FuzzBayeuxReplyEncoding(f *testing.F) {
	f.Add("/meta/connect", true, []byte(`"3"`), "abc", "", "retry", int64(0), int64(30000), false, []byte(nil))
	f.Add("/x", false, []byte(`{ "a":1}`), "", "402::x", "", int64(-1), int64(0), true, []byte(`{"ack":5}`))
	f.Add("/<x>", false, []byte(`"\u2028"`), "é", "", "none", int64(5), int64(1), false, []byte(`[1, 2]`))
	f.Fuzz(func(t *testing.T, channel string, ok bool, id []byte, clientID, errText, reconnect string,
		interval, timeout int64, multi bool, ext []byte) {
		r := &bayeuxReply{Channel: channel, Successful: ok, ID: id, ClientID: clientID, Error: errText, Ext: ext}
		if reconnect != "" || interval != 0 || timeout != 0 || multi {
			r.Advice = &bayeuxAdvice{Reconnect: reconnect, Interval: interval, Timeout: timeout, MultipleClients: multi}
		}
		checkReplyEncoding(t, r)
	})
}
