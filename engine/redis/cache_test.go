package redis

import (
	"encoding/json"
	"testing"

	"github.com/stardust-go/stardust/server"
)

// TestCacheAnswersOnlyForItsPayload: a sequence number repeated after
// Redis lost data names another message; the cache must decode it, never
// answer with the message it kept under that number.
func TestCacheAnswersOnlyForItsPayload(t *testing.T) {
	var c msgCache
	c.init(4)
	secret := &server.Message{Channel: "/secret", Data: json.RawMessage(`{"s":1}`)}
	c.put(7, encode(secret), secret)
	public := encode(&server.Message{Channel: "/public", Data: json.RawMessage(`{"p":1}`)})
	got, err := c.get(7, public)
	if err != nil || got.Channel != "/public" {
		t.Fatalf("get(7, a /public payload) = %v, %v; want the /public message", got, err)
	}
	if again, _ := c.get(7, public); again != got {
		t.Errorf("the /public message is not cached in its turn")
	}
	if hit, _ := c.get(7, encode(secret)); hit.Channel != "/secret" {
		t.Errorf("get(7, the /secret payload) = %s", hit.Channel)
	}
}
