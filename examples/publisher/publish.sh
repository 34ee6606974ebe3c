#!/bin/sh
# Publish to Stardust with curl, through both APIs.
#   sh publish.sh [http://127.0.0.1:5742/comet]
set -eu
BASE=${1:-http://127.0.0.1:5742/comet}

# The Stardust API: one POST, each m= a JSON object, to channel "news".
curl -sS --fail-with-body -d 'm={"type":"greeting","from":"curl","via":"stardust"}' "$BASE/channel/news"

# Bayeux: handshake, publish to /stardust/news (the same channel), disconnect.
hs=$(curl -sS --fail-with-body -H 'Content-Type: application/json' \
  -d '[{"channel":"/meta/handshake","version":"1.0","supportedConnectionTypes":["long-polling"]}]' "$BASE/bayeux")
id=$(printf '%s' "$hs" | sed -n 's/.*"clientId":"\([0-9a-f]*\)".*/\1/p')
[ -n "$id" ] || { echo "handshake failed: $hs" >&2; exit 1; }
curl -sS --fail-with-body -H 'Content-Type: application/json' \
  -d '[{"channel":"/stardust/news","clientId":"'"$id"'","data":{"type":"greeting","from":"curl","via":"bayeux"}},
       {"channel":"/meta/disconnect","clientId":"'"$id"'"}]' "$BASE/bayeux"
echo
