#!/usr/bin/env python3
"""Publish to Stardust from Python, standard library only, through both APIs.

    python3 publish.py [http://127.0.0.1:5742/comet]
"""
import json
import sys
import urllib.parse
import urllib.request

base = sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:5742/comet"

# The Stardust API: each m= a JSON object, to channel "news".
form = urllib.parse.urlencode({"m": json.dumps({"type": "greeting", "from": "python", "via": "stardust"})})
with urllib.request.urlopen(base + "/channel/news", data=form.encode(), timeout=10) as r:
    print("stardust:", r.read().decode().strip())


def bayeux(*messages):
    """POST one batch to {base}/bayeux and return the replies."""
    req = urllib.request.Request(base + "/bayeux", data=json.dumps(messages).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.load(r)


# Bayeux: handshake, publish to /stardust/news (the same channel), disconnect.
client_id = bayeux({"channel": "/meta/handshake", "version": "1.0",
                    "supportedConnectionTypes": ["long-polling"]})[0]["clientId"]
replies = bayeux({"channel": "/stardust/news", "clientId": client_id,
                  "data": {"type": "greeting", "from": "python", "via": "bayeux"}},
                 {"channel": "/meta/disconnect", "clientId": client_id})
if not replies[0].get("successful"):
    sys.exit("bayeux: publish failed: %r" % replies)
print("bayeux: published")
