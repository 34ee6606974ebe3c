#!/usr/bin/env python3
"""Sign a token for Stardust's [auth] token_hmac_secret (HS256, standard
library only), as a Python site beside Stardust would at login.

    STARDUST_SECRET=... python3 stardust_token.py 42 [ttl seconds]

prints a token whose "sub" is the user id and "exp" now + ttl (default 300).
Set it as the HttpOnly cookie stardust_token, or give it to stardust.js's
token option.
"""
import base64
import hashlib
import hmac
import json
import os
import sys
import time


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def stardust_token(user: str, secret: str, ttl: int = 300) -> str:
    head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    claims = b64(json.dumps({"sub": user, "exp": int(time.time()) + ttl}).encode())
    sig = hmac.new(secret.encode(), f"{head}.{claims}".encode(), hashlib.sha256).digest()
    return f"{head}.{claims}.{b64(sig)}"


if __name__ == "__main__":
    secret = os.environ.get("STARDUST_SECRET", "")
    if len(secret) < 32 or len(sys.argv) < 2:
        sys.exit("usage: STARDUST_SECRET=(32 bytes or more) stardust_token.py USER [TTL]")
    print(stardust_token(sys.argv[1], secret, int(sys.argv[2]) if len(sys.argv) > 2 else 300))
