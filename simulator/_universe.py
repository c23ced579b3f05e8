"""The simulated market universe: series -> events -> markets, derived from (seed, index).

Nothing per market is stored but one status byte and the few markets whose times changed, so a registry
of 1,000,000 markets costs a few MB; every other field is recomputed from the index when asked for.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

MARKETS_PER_EVENT = 4
FLOOR_PRICE = 10_000  # a floor market's settlement floor: $0.10
EVENTS_PER_SERIES = 25
DAY_S = 86_400

_WORDS = (
    "HIGHNY",
    "HIGHCHI",
    "HIGHLAX",
    "RAINNYC",
    "CPI",
    "FED",
    "GDP",
    "PAYROLLS",
    "NASDAQ100",
    "INX",
    "BTCD",
    "ETHD",
    "NBAGAME",
    "NFLGAME",
    "MLBGAME",
    "EPLGAME",
    "SENATE",
    "HOUSE",
    "TSAW",
    "GASPRICE",
)
_CATEGORIES = ("Climate and Weather", "Economics", "Financials", "Crypto", "Sports", "Politics")
_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")

# Response status values of ../shared/kalshi-api.md. Codes are what the status bytearray holds.
STATUSES = ("initialized", "active", "inactive", "closed", "determined", "disputed", "amended", "finalized")
INITIALIZED, ACTIVE, INACTIVE, CLOSED, DETERMINED, DISPUTED, AMENDED, FINALIZED = range(8)
# `status` query filter values -> response statuses they select (filter semantics unconfirmed upstream).
STATUS_FILTERS: dict[str, frozenset[int]] = {
    "unopened": frozenset({INITIALIZED}),
    "open": frozenset({ACTIVE}),
    "paused": frozenset({INACTIVE}),
    "closed": frozenset({CLOSED, DETERMINED, DISPUTED, AMENDED}),
    "settled": frozenset({FINALIZED}),
}
# The official SDK 3.2.0 only accepts initialized/active/closed/settled/determined: with
# status_vocabulary="sdk" the other statuses are reported as their nearest SDK value.
_SDK_STATUS = {INACTIVE: "active", DISPUTED: "determined", AMENDED: "determined", FINALIZED: "settled"}

# Initial status mix for markets outside the hot set (per mille): mostly open, every status present.
_STATUS_MIX = (
    (INITIALIZED, 80),
    (ACTIVE, 700),
    (INACTIVE, 20),
    (CLOSED, 60),
    (DETERMINED, 30),
    (DISPUTED, 5),
    (AMENDED, 5),
    (FINALIZED, 100),
)


def _h(seed: int, *parts: object) -> int:
    """A stable 64-bit hash of the seed and parts (Python's hash() is salted per process)."""
    d = hashlib.blake2b(repr((seed, *parts)).encode(), digest_size=8).digest()
    return int.from_bytes(d, "big")


@dataclass
class MarketTimes:
    created_s: int
    open_s: int
    close_s: int
    expiration_s: int


@dataclass
class Universe:
    """Every series, event and market of the simulated exchange."""

    seed: int
    n_markets: int
    start_s: int  # unix seconds the run started; market times are laid around it
    hot: int  # markets [0, hot) are active with living books
    status: bytearray = field(init=False)
    time_overrides: dict[int, MarketTimes] = field(default_factory=dict)
    results: dict[int, str] = field(default_factory=dict)
    updated_us: dict[int, int] = field(default_factory=dict)  # a market's last change (its object's updated_time)
    # Share of series that are multivariate (combo) series, KXMVE...: on Kalshi they outnumber the rest by far.
    # A property of the series (a hash of its index), so a million markets cost no per-market state.
    mve_share: float = 0.0
    deci_cent_every: int = 5  # every 5th market uses the sub-penny price structure

    def __post_init__(self) -> None:
        self.status = bytearray(self.n_markets)
        for i in range(self.n_markets):
            self.status[i] = self._initial_status(i)

    # ---- identities -------------------------------------------------------------------------------
    @property
    def n_events(self) -> int:
        return (self.n_markets + MARKETS_PER_EVENT - 1) // MARKETS_PER_EVENT

    @property
    def n_series(self) -> int:
        return (self.n_events + EVENTS_PER_SERIES - 1) // EVENTS_PER_SERIES

    def series_ticker(self, s: int) -> str:
        word = _WORDS[s % len(_WORDS)]
        n = s // len(_WORDS)
        prefix = "KXMVE" if self.is_mve_series(s) else "KX"
        return f"{prefix}{word}" if n == 0 else f"{prefix}{word}{n}"

    def event_ticker(self, e: int) -> str:
        s, k = divmod(e, EVENTS_PER_SERIES)
        day = 1 + k % 28
        month = _MONTHS[(s + k // 28) % 12]
        return f"{self.series_ticker(s)}-26{month}{day:02d}"

    def market_ticker(self, i: int) -> str:
        e, k = divmod(i, MARKETS_PER_EVENT)
        return f"{self.event_ticker(e)}-T{40 + 5 * k}"

    def is_mve_series(self, s: int) -> bool:
        return self.mve_share > 0 and _h(self.seed, "mve", s) % 10_000 < self.mve_share * 10_000

    def is_multivariate(self, i: int) -> bool:
        """A market of a multivariate series: its lifecycle goes to multivariate_market_lifecycle only."""
        return self.is_mve_series(self.series_of_event(self.event_of(i)))

    def market_id(self, i: int) -> str:
        h = _h(self.seed, "mid", i)
        h2 = _h(self.seed, "mid2", i)
        x = f"{h:016x}{h2:016x}"
        return f"{x[:8]}-{x[8:12]}-4{x[13:16]}-a{x[17:20]}-{x[20:32]}"

    def parse_market_ticker(self, ticker: str) -> int | None:
        """Index of a market ticker, or None. Parses instead of storing a 1M-entry dict."""
        try:
            ev, strike = ticker.rsplit("-", 1)
            _series, _day = ev.split("-", 1)
        except ValueError:
            return None
        e = self.parse_event_ticker(ev)
        if e is None or not strike.startswith("T") or not strike[1:].isdigit():
            return None
        k, rem = divmod(int(strike[1:]) - 40, 5)
        if rem or not 0 <= k < MARKETS_PER_EVENT:
            return None
        i = e * MARKETS_PER_EVENT + k
        return i if i < self.n_markets and self.market_ticker(i) == ticker else None

    def parse_series_ticker(self, ticker: str) -> int | None:
        if not ticker.startswith("KX"):
            return None
        rest = ticker.removeprefix("KXMVE") if ticker.startswith("KXMVE") else ticker[2:]
        for w, word in enumerate(_WORDS):
            if rest.startswith(word):
                n = rest[len(word) :]
                if n == "":
                    s = w
                elif n.isdigit() and not n.startswith("0"):
                    s = int(n) * len(_WORDS) + w
                else:
                    continue
                if s < self.n_series and self.series_ticker(s) == ticker:
                    return s
        return None

    def parse_event_ticker(self, ticker: str) -> int | None:
        try:
            series, _code = ticker.split("-", 1)
        except ValueError:
            return None
        s = self.parse_series_ticker(series)
        if s is None:
            return None
        for k in range(EVENTS_PER_SERIES):
            e = s * EVENTS_PER_SERIES + k
            if e < self.n_events and self.event_ticker(e) == ticker:
                return e
        return None

    def event_of(self, i: int) -> int:
        return i // MARKETS_PER_EVENT

    def series_of_event(self, e: int) -> int:
        return e // EVENTS_PER_SERIES

    def markets_of_event(self, e: int) -> range:
        return range(e * MARKETS_PER_EVENT, min((e + 1) * MARKETS_PER_EVENT, self.n_markets))

    def category(self, s: int) -> str:
        return _CATEGORIES[s % len(_CATEGORIES)]

    # ---- state ------------------------------------------------------------------------------------
    def _initial_status(self, i: int) -> int:
        if i < self.hot:
            return ACTIVE
        r = _h(self.seed, "status", i) % 1000
        for code, weight in _STATUS_MIX:
            if r < weight:
                return code
            r -= weight
        return ACTIVE

    def status_name(self, i: int, vocabulary: str = "current") -> str:
        code = self.status[i]
        if vocabulary == "sdk":
            return _SDK_STATUS.get(code, STATUSES[code])
        return STATUSES[code]

    def is_deci_cent(self, i: int) -> bool:
        return i % self.deci_cent_every == self.deci_cent_every - 1

    def times(self, i: int) -> MarketTimes:
        if i in self.time_overrides:
            return self.time_overrides[i]
        h = _h(self.seed, "times", i)
        code = self._initial_status(i) if i < len(self.status) else INITIALIZED
        created = self.start_s - DAY_S * (1 + h % 20)
        if code == INITIALIZED:
            open_s = self.start_s + DAY_S * (1 + h % 5)
            close_s = open_s + DAY_S * (1 + h % 7)
        elif code in (ACTIVE, INACTIVE):
            open_s = created + 3600
            close_s = self.start_s + DAY_S * (1 + h % 30)
        else:
            open_s = created + 3600
            close_s = self.start_s - 3600 * (1 + h % 48)
        return MarketTimes(created, open_s, close_s, close_s + 3600)

    def is_scalar(self, i: int) -> bool:
        """A scalar market (settled by a value, not yes or no): one in eleven."""
        return i % 11 == 6

    def is_floor(self, i: int) -> bool:
        """A market whose YES settles at no less than a floor (settlement_bounds_type 'floor'): one in nine."""
        return i % 9 == 4

    def exchange_index(self, i: int) -> int:
        return int(_h(self.seed, "shard", i) % 16)

    def touch(self, i: int, now_us: int) -> None:
        """The market changed now: its object's updated_time moves (what Kalshi's newest-wins readers go by)."""
        self.updated_us[i] = max(now_us, self.updated_us.get(i, 0) + 1)

    def result(self, i: int) -> str:
        if i in self.results:
            return self.results[i]
        if self.status[i] in (DETERMINED, DISPUTED, AMENDED, FINALIZED):
            if self.is_scalar(i):
                return "scalar"
            return "yes" if _h(self.seed, "result", i) % 2 else "no"
        return ""

    def settlement_value(self, i: int) -> int:
        """What YES settled at, in price units: $1 or $0, a scalar market's value (whole cents, at least its
        floor); only for a market with a result."""
        result = self.result(i)
        if result != "scalar":
            return 100_000 if result == "yes" else 0
        value = (_h(self.seed, "value", i) % 101) * 1_000
        return max(value, FLOOR_PRICE) if self.is_floor(i) else value

    def add_market(self, now_s: int) -> int:
        """A market created mid-run (announced as lifecycle `created`). Returns its index."""
        i = self.n_markets
        self.n_markets += 1
        self.status.append(INITIALIZED)
        self.time_overrides[i] = MarketTimes(now_s, now_s + DAY_S, now_s + 2 * DAY_S, now_s + 2 * DAY_S + 3600)
        return i

    def indices_with_status(self, codes: frozenset[int], start: int = 0) -> int:
        """Count of markets at or after start with one of the statuses (used by tests and the summary)."""
        return sum(1 for i in range(start, self.n_markets) if self.status[i] in codes)
