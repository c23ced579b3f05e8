"""Kalshi request signing: RSA-PSS (SHA-256, MGF1 SHA-256, salt 32) over timestamp + METHOD + path.

The private key is read once from a PEM file that must not be readable by group or others; neither the
key nor any signature is ever logged.
"""

from __future__ import annotations

import base64
import os
import stat
import time
from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

_PSS = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)


class KeyFileError(Exception):
    """The private key file is missing, unreadable, too open or not an RSA key."""


def load_private_key(path: str | Path) -> rsa.RSAPrivateKey:
    p = Path(path)
    try:
        mode = p.stat().st_mode
    except OSError as exc:
        raise KeyFileError(f"private key file {p}: {exc.strerror}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise KeyFileError(
            f"private key file {p} is accessible by group or others (mode {stat.S_IMODE(mode):o}); run: chmod 600 {p}"
        )
    try:
        key = serialization.load_pem_private_key(p.read_bytes(), password=None)
    except (ValueError, TypeError):
        raise KeyFileError(f"private key file {p} is not an unencrypted PEM private key") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise KeyFileError(f"private key file {p} is not an RSA key")
    return key


class Signer:
    """Produces the three KALSHI-ACCESS-* headers for a request."""

    def __init__(self, key_id: str, key: rsa.RSAPrivateKey) -> None:
        self.key_id = key_id
        self._key = key

    def __repr__(self) -> str:  # never show the key
        return f"Signer(key_id={self.key_id!r})"

    def headers(self, method: str, path: str, now_ms: int | None = None) -> dict[str, str]:
        """path is the URL path from /trade-api/..., without the query string."""
        ts = str(now_ms if now_ms is not None else int(time.time() * 1000))
        sig = self._key.sign(f"{ts}{method.upper()}{path}".encode(), _PSS, hashes.SHA256())
        return {
            "KALSHI-ACCESS-KEY": self.key_id,
            "KALSHI-ACCESS-TIMESTAMP": ts,
            "KALSHI-ACCESS-SIGNATURE": base64.b64encode(sig).decode(),
        }


def signer_from_config(key_id: str | None, key_path: str | None) -> Signer | None:
    """None when no key is configured (the simulator without --public-key needs none)."""
    if not key_id and not key_path:
        return None
    if not key_id or not key_path:
        raise KeyFileError("kalshi.api_key_id and kalshi.private_key_path must be set together")
    return Signer(key_id, load_private_key(os.path.expanduser(key_path)))
