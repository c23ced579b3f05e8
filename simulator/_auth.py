"""Kalshi request authentication (timestamp + METHOD + path, signed) and per-second rate limits.

Verification follows ../shared/kalshi-api.md: headers KALSHI-ACCESS-KEY, KALSHI-ACCESS-TIMESTAMP (unix ms)
and KALSHI-ACCESS-SIGNATURE (base64); the message is timestamp + method + path without the query string. The
algorithm is the registered public key's: RSA-PSS with SHA-256, MGF1(SHA-256), salt length 32, or Ed25519.
Missing, bad or stale signatures answer 401, each with its own error code (kalshi-api.md names none: ours are
`missing_authentication`, `unknown_api_key`, `invalid_signature`, `stale_timestamp`).
"""

from __future__ import annotations

import base64
import binascii
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa

KEY_HEADER = "KALSHI-ACCESS-KEY"
TS_HEADER = "KALSHI-ACCESS-TIMESTAMP"
SIG_HEADER = "KALSHI-ACCESS-SIGNATURE"
_PSS = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)


PublicKey = rsa.RSAPublicKey | ed25519.Ed25519PublicKey


def load_public_keys(spec: list[str]) -> dict[str, PublicKey]:
    """`KEY_ID=path/to/public.pem` entries -> key id -> public key (RSA or Ed25519)."""
    keys: dict[str, PublicKey] = {}
    for entry in spec:
        key_id, sep, path = entry.partition("=")
        if not sep:
            raise ValueError(f"public key {entry!r}: expected KEY_ID=PATH")
        key = serialization.load_pem_public_key(Path(path).read_bytes())
        if not isinstance(key, rsa.RSAPublicKey | ed25519.Ed25519PublicKey):
            raise ValueError(f"public key {key_id}: neither an RSA nor an Ed25519 key")
        keys[key_id] = key
    return keys


class AuthError(Exception):
    """A request whose signature does not hold: `code` and the message for the 401."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


@dataclass
class Verifier:
    keys: dict[str, PublicKey]
    max_skew_s: float = 60.0  # how stale a timestamp may be (Kalshi's window is unconfirmed)

    def check(self, headers: Mapping[str, str], method: str, path: str) -> str | None:
        """None when the request is properly signed, else the reason it is not (for a 401)."""
        try:
            self.verify(headers, method, path)
        except AuthError as exc:
            return exc.message
        return None

    def signed(self, headers: Mapping[str, str]) -> bool:
        return any(h in headers for h in (KEY_HEADER, TS_HEADER, SIG_HEADER))

    def verify(self, headers: Mapping[str, str], method: str, path: str) -> None:
        key_id, ts, sig = headers.get(KEY_HEADER), headers.get(TS_HEADER), headers.get(SIG_HEADER)
        if not (key_id and ts and sig):
            raise AuthError("missing_authentication", "missing authentication headers")
        key = self.keys.get(key_id)
        if key is None:
            raise AuthError("unknown_api_key", "unknown API key")
        if not ts.isdigit():
            raise AuthError("invalid_timestamp", "timestamp must be unix milliseconds")
        if abs(time.time() * 1000 - int(ts)) > self.max_skew_s * 1000:
            raise AuthError("stale_timestamp", "stale timestamp")
        message = f"{ts}{method.upper()}{path}".encode()
        try:
            raw = base64.b64decode(sig, validate=True)
            if isinstance(key, rsa.RSAPublicKey):
                key.verify(raw, message, _PSS, hashes.SHA256())
            else:
                key.verify(raw, message)
        except (InvalidSignature, binascii.Error, ValueError):
            raise AuthError("invalid_signature", "invalid signature") from None


@dataclass
class TokenBucket:
    rate: float
    burst: float
    tokens: float = field(init=False)
    at: float = field(init=False)

    def __post_init__(self) -> None:
        self.tokens = self.burst
        self.at = time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


@dataclass
class RateLimiter:
    """Per-client (API key, else remote address) read budget; None rate = unlimited."""

    rate: float | None
    burst: float = 0
    buckets: dict[str, TokenBucket] = field(default_factory=dict)

    def allow(self, client: str) -> bool:
        if self.rate is None:
            return True
        b = self.buckets.get(client)
        if b is None:
            b = self.buckets[client] = TokenBucket(self.rate, self.burst or self.rate)
        return b.take()
