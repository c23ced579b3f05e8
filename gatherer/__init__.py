"""The gatherer: Kalshi REST client, MarketRegistry, SnapshotPoller and WebSocket connections of one host.

Owns talking to Kalshi (signing, rate limits, retries, reconnects, gap detection and resync).
Must not write the database itself (records go to the router's sink) and must not parse frames (router).
"""

from gatherer._client import ClientStats, KalshiApiError, KalshiRestClient
from gatherer._connection import WsConnection
from gatherer._outages import CaptureWatch
from gatherer._poller import SnapshotPoller
from gatherer._pool import ConnectionPool
from gatherer._probe import Probe
from gatherer._process import Gatherer, StartupError, run_gatherer
from gatherer._ratelimit import AsyncTokenBucket
from gatherer._registry import MarketRegistry, RegistryChange
from gatherer._signing import KeyFileError, Signer, load_private_key, signer_from_config

__all__ = [
    "AsyncTokenBucket",
    "CaptureWatch",
    "ClientStats",
    "ConnectionPool",
    "Gatherer",
    "KalshiApiError",
    "KalshiRestClient",
    "KeyFileError",
    "MarketRegistry",
    "Probe",
    "RegistryChange",
    "Signer",
    "SnapshotPoller",
    "StartupError",
    "WsConnection",
    "load_private_key",
    "run_gatherer",
    "signer_from_config",
]
