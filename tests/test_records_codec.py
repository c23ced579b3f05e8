from __future__ import annotations

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.codec import CODEC_VERSION, DecodeError, decode_batch, encode_batch
from core.records import (
    Kind,
    OrderbookDelta,
    OrderbookSnapshot,
    Ticker,
    Trade,
    content_digest,
    ticker_digest,
)


def _delta(i: int) -> OrderbookDelta:
    return OrderbookDelta("g1", 1_000 + i, 2_000, "T1", "mid", True, 48000, -5400, i, 7, 10 + i, None)


def test_round_trip_batch() -> None:
    recs = [_delta(i) for i in range(5)]
    kind, out = decode_batch(encode_batch(recs))
    assert kind is Kind.ORDERBOOK_DELTA
    assert out == recs
    assert all(isinstance(r, OrderbookDelta) for r in out)


def test_plain_kinds_come_back_as_lists_in_field_order_others_as_records() -> None:
    deltas = [_delta(i) for i in range(5)]
    kind, rows = decode_batch(encode_batch(deltas), plain={Kind.ORDERBOOK_DELTA})
    assert kind is Kind.ORDERBOOK_DELTA
    assert all(type(r) is list for r in rows)
    assert [tuple(r) for r in rows] == deltas  # the record's fields, in its order
    t = Trade("g1", 1, 2, "T1", "id-1", 36000, 64000, 13600, False, "ask", False, None, "rest")
    _, [out] = decode_batch(encode_batch([t]), plain={Kind.ORDERBOOK_DELTA})
    assert isinstance(out, Trade)  # a kind not asked for stays a record
    # an older row is padded into a record even when its kind is plain: still in field order
    _, [old] = decode_batch(msgpack.packb([1, int(Kind.TRADE), [list(t)[:-2]]]), plain={Kind.TRADE})
    assert isinstance(old, Trade) and old.source == "ws" and old.sent_us is None


def test_snapshot_levels_come_back_as_tuples() -> None:
    snap = OrderbookSnapshot("g1", 1, None, "T1", None, "ws", 3, 1, [(45000, 10000)], [(50000, 8000)])
    _, [out] = decode_batch(encode_batch([snap]))
    assert out == snap


def test_older_record_gets_defaults() -> None:
    # A trade written before `source` and `sent_us` existed (two fields shorter) decodes with the defaults;
    # one written before `sent_us` keeps its source.
    t = Trade("g1", 1, 2, "T1", "id-1", 36000, 64000, 13600, False, "ask", False, None, "rest", 1_700_000_000_000_000)
    _, [out] = decode_batch(msgpack.packb([1, int(Kind.TRADE), [list(t)[:-2]]]))
    assert (out.source, out.sent_us, out.trade_id) == ("ws", None, "id-1")
    _, [out] = decode_batch(msgpack.packb([1, int(Kind.TRADE), [list(t)[:-1]]]))
    assert (out.source, out.sent_us) == ("rest", None)


def test_newer_or_broken_payloads_are_rejected() -> None:
    t = Trade("g1", 1, 2, "T1", "id-1", 36000, 64000, 13600, False, "ask", False, None)
    with pytest.raises(DecodeError, match="wrong shape"):
        decode_batch(msgpack.packb([1, int(Kind.TRADE), [[*list(t), "extra"]]]))
    with pytest.raises(DecodeError, match="version"):
        decode_batch(msgpack.packb([CODEC_VERSION + 1, int(Kind.TRADE), []]))
    with pytest.raises(DecodeError, match="kind"):
        decode_batch(msgpack.packb([1, 99, []]))
    with pytest.raises(DecodeError, match="not msgpack"):
        decode_batch(b"\xc1")
    with pytest.raises(DecodeError, match="required"):
        decode_batch(msgpack.packb([1, int(Kind.TRADE), [list(t)[:3]]]))


def test_mixed_kinds_refused() -> None:
    t = Trade("g1", 1, 2, "T1", "id-1", 36000, 64000, 13600, False, "ask", False, None)
    with pytest.raises(ValueError, match="one record kind"):
        encode_batch([t, _delta(0)])


def test_digest_is_stable_and_sensitive() -> None:
    a = Ticker("g1", 1, 2, "T1", None, 48000, 45000, 53000, 100, 200, None, 5, 6, 7, 8)
    b = a._replace(gatherer_id="g2", received_us=99)  # who saw it, and when, is not content
    c = a._replace(yes_ask_size=201)
    assert ticker_digest(a) == ticker_digest(b)
    assert ticker_digest(a) != ticker_digest(c)
    # fixed value: the digest is part of stored natural keys and must never change between versions
    assert content_digest(1, "x", None) == 3307559561019255694


@given(st.lists(st.tuples(st.integers(0, 100_000), st.integers(-(10**9), 10**9)), max_size=50))
def test_snapshot_round_trip_property(levels: list[tuple[int, int]]) -> None:
    snap = OrderbookSnapshot("g1", 1, None, "T", None, "rest", None, None, levels, list(reversed(levels)))
    assert decode_batch(encode_batch([snap]))[1] == [snap]
