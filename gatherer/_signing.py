"""Kalshi request signing over timestamp + METHOD + path, with the key type the file holds: RSA-PSS (SHA-256,
MGF1 SHA-256, salt 32) or Ed25519 (RFC 8032, Kalshi's default for keys made since 2026-10-01). Headers and
signed text are the same for both (kalshi-api.md).

The private key is read once from a PEM file that must not be readable by group or others; the type comes from
the parsed key, not the PEM header (an RSA key may be PKCS#1 or PKCS#8). Neither the key nor any signature is
ever logged.
"""

from __future__ import annotations

import base64
import os
import stat
import time
from collections.abc import Callable
from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa

_PSS = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
PrivateKey = rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey
KEY_TYPES = "an RSA or an Ed25519 private key"


class KeyFileError(Exception):
    """The private key file is missing, unreadable, too open or of a type Kalshi does not take."""


def key_type(key: PrivateKey) -> str:
    """'rsa' or 'ed25519' (with the RSA key's size: 'rsa-2048')."""
    return f"rsa-{key.key_size}" if isinstance(key, rsa.RSAPrivateKey) else "ed25519"


def load_private_key(path: str | Path) -> PrivateKey:
    """The key in a PEM file. Errors name the setting, not the path (the path is kept out of output and logs
    like every secret of the config)."""
    p = Path(path)
    f = "the private key file (kalshi.private_key_path)"
    try:
        mode = p.stat().st_mode
    except OSError as exc:
        raise KeyFileError(f"{f}: {exc.strerror}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise KeyFileError(f"{f} is accessible by group or others (mode {stat.S_IMODE(mode):o}); run: chmod 600 on it")
    try:
        key = serialization.load_pem_private_key(p.read_bytes(), password=None)
    except (ValueError, TypeError):
        raise KeyFileError(f"{f} is not an unencrypted PEM private key") from None
    except OSError as exc:
        raise KeyFileError(f"{f}: {exc.strerror}") from None
    if not isinstance(key, rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey):
        raise KeyFileError(
            f"{f} holds {_kind_of(key)}; Kalshi takes {KEY_TYPES}: create one at kalshi.com (Account, API keys)"
        )
    return key


def _kind_of(key: object) -> str:
    from cryptography.hazmat.primitives.asymmetric import ec, ed448

    kinds = ((ec.EllipticCurvePrivateKey, "an elliptic-curve (ECDSA) key"), (ed448.Ed448PrivateKey, "an Ed448 key"))
    return next((name for cls, name in kinds if isinstance(key, cls)), "a key of another type")


class Signer:
    """Produces the three KALSHI-ACCESS-* headers for a request."""

    def __init__(self, key_id: str, key: PrivateKey, clock_ms: Callable[[], int] | None = None) -> None:
        self.key_id = key_id
        self._key = key
        self._clock_ms = clock_ms or (lambda: int(time.time() * 1000))

    def __repr__(self) -> str:  # never show the key
        return f"Signer(key_id={self.key_id!r}, type={self.key_type!r})"

    @property
    def key_type(self) -> str:
        return key_type(self._key)

    def sign(self, message: bytes) -> bytes:
        if isinstance(self._key, rsa.RSAPrivateKey):
            return self._key.sign(message, _PSS, hashes.SHA256())
        return self._key.sign(message)

    def headers(self, method: str, path: str, now_ms: int | None = None) -> dict[str, str]:
        """path is the URL path from /trade-api/..., without the query string."""
        ts = str(now_ms if now_ms is not None else self._clock_ms())
        sig = self.sign(f"{ts}{method.upper()}{path}".encode())
        return {
            "KALSHI-ACCESS-KEY": self.key_id,
            "KALSHI-ACCESS-TIMESTAMP": ts,
            "KALSHI-ACCESS-SIGNATURE": base64.b64encode(sig).decode(),
        }


def signer_from_config(
    key_id: str | None, key_path: str | None, clock_ms: Callable[[], int] | None = None
) -> Signer | None:
    """None when no key is configured (the simulator without --public-key needs none)."""
    if not key_id and not key_path:
        return None
    if not key_id or not key_path:
        raise KeyFileError("kalshi.api_key_id and kalshi.private_key_path must be set together")
    return Signer(key_id, load_private_key(os.path.expanduser(key_path)), clock_ms)
