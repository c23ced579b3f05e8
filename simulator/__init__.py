"""The Kalshi exchange simulator: REST + WebSocket on one port, a seeded living market, a ledger, faults.

Owns the wire format as the exchange speaks it (../shared/kalshi-api.md) and the ground truth of what it sent.
Must not import gatherer, router, writers or dedup: it is the independent counterpart they are tested against.
"""
