// Command publisher publishes to Stardust from Go with nothing but the
// standard library, through both APIs: a POST to the Stardust API, then a
// Bayeux handshake, publish and disconnect.
//
//	go run ./examples/publisher [http://127.0.0.1:5742/comet]
package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/url"
	"os"
	"time"
)

func main() {
	base := "http://127.0.0.1:5742/comet"
	if len(os.Args) > 1 {
		base = os.Args[1]
	}
	client := &http.Client{Timeout: 10 * time.Second}

	// The Stardust API: each m= a JSON object, to channel "news".
	resp, err := client.PostForm(base+"/channel/news", url.Values{
		"m": {`{"type":"greeting","from":"go","via":"stardust"}`},
	})
	if err != nil {
		log.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		log.Fatalf("stardust: %s %s", resp.Status, body)
	}
	fmt.Printf("stardust: %s", body)

	// Bayeux: a batch is a JSON array of messages, POSTed to {base}/bayeux.
	bayeux := func(msgs ...map[string]any) []map[string]any {
		b, _ := json.Marshal(msgs)
		resp, err := client.Post(base+"/bayeux", "application/json", bytes.NewReader(b))
		if err != nil {
			log.Fatal(err)
		}
		defer resp.Body.Close()
		var replies []map[string]any
		if err := json.NewDecoder(resp.Body).Decode(&replies); err != nil {
			log.Fatalf("bayeux: %s: %v", resp.Status, err)
		}
		return replies
	}
	hs := bayeux(map[string]any{"channel": "/meta/handshake", "version": "1.0",
		"supportedConnectionTypes": []string{"long-polling"}})
	id, _ := hs[0]["clientId"].(string)
	if id == "" {
		log.Fatalf("bayeux: handshake failed: %v", hs)
	}
	replies := bayeux(
		map[string]any{"channel": "/stardust/news", "clientId": id,
			"data": map[string]string{"type": "greeting", "from": "go", "via": "bayeux"}},
		map[string]any{"channel": "/meta/disconnect", "clientId": id},
	)
	if replies[0]["successful"] != true {
		log.Fatalf("bayeux: publish failed: %v", replies)
	}
	fmt.Println("bayeux: published")
}
