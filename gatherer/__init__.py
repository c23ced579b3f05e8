"""The gatherer: Kalshi REST client, market registry, WebSocket connection pool, REST snapshot poller.

Owns every conversation with the exchange and the decision of what to subscribe to.
Must not parse data frames into records (router/) nor write event tables (writers/).
"""
