"""The gatherer: Kalshi REST client, MarketRegistry, SnapshotPoller and WebSocket connections of one host.

Owns talking to Kalshi (signing, rate limits, retries, reconnects, gap detection and resync).
Must not write the database itself (records go to the router's sink) and must not parse frames (router).
"""

from gatherer._client import ClientStats, KalshiApiError, KalshiRestClient
from gatherer._connection import WsConnection
from gatherer._models import event_record, market_record, rest_trade, series_record
from gatherer._outages import CaptureWatch
from gatherer._poller import SnapshotPoller
from gatherer._pool import ConnectionPool
from gatherer._probe import Probe
from gatherer._process import Gatherer, StartupError, run_gatherer
from gatherer._ratelimit import AsyncTokenBucket, SharedTokenBucket, TokenBucket, limiter_from_config
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
    "SharedTokenBucket",
    "Signer",
    "SnapshotPoller",
    "StartupError",
    "TokenBucket",
    "WsConnection",
    "event_record",
    "limiter_from_config",
    "load_private_key",
    "market_record",
    "rest_trade",
    "run_gatherer",
    "series_record",
    "signer_from_config",
]
