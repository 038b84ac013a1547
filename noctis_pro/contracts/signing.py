"""HMAC-SHA256 signature of webhook bodies, shared by the Rust SCP (notify.rs), FastAPI and Django's webhook.

The signed message is `<unix timestamp>.<raw body>`; headers carry the timestamp and `sha256=<hex>`.
A signature older (or newer) than MAX_SKEW_SECONDS is stale, which stops replays of captured requests.
"""

import hashlib
import hmac
import time

TIMESTAMP_HEADER = "X-Noctis-Timestamp"
SIGNATURE_HEADER = "X-Noctis-Signature"
MAX_SKEW_SECONDS = 300


def signature_for(*, secret: str, timestamp: int, body: bytes) -> str:
    message = str(timestamp).encode() + b"." + body
    return "sha256=" + hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def signature_problem(
    *, secret: str, body: bytes, timestamp: str | None, signature: str | None, now: float | None = None
) -> str | None:
    """Why the request's signature is not acceptable, or None when it is."""
    if not timestamp or not signature:
        return "missing signature"
    try:
        ts = int(timestamp)
    except ValueError:
        return "malformed timestamp"
    current = time.time() if now is None else now
    if abs(current - ts) > MAX_SKEW_SECONDS:
        return "stale signature"
    expected = signature_for(secret=secret, timestamp=ts, body=body)
    if not hmac.compare_digest(expected, signature):
        return "wrong signature"
    return None
