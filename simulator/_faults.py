"""Fault schedules: what goes wrong, where and when, so a test can say exactly what it survived.

A schedule file (YAML):

    ws:
      - kind: close            # close | silence | skip_seq | duplicate | reorder | malformed | truncated
        connection: 1          #   | fragment (the next message in three frames) | unknown_type | bad_utf8
                               #   | stall | drop_delta (a silent loss: the next
                               #   orderbook_delta is never sent and the seq numbers run on without a gap)
                               #   | lose_delta / lose_trade (the exchange loses the next delta or trade of
                               #   any market for every subscriber: each subscription carrying it skips a seq).
                               #   connection: 1-based accept order;
                               #   omit = every
        channel: orderbook_delta  # optional: count only connections first subscribing to this channel
        after_messages: 500    # trigger after N data messages on that connection (or after_s: seconds)
        duration_s: 2.0        # stall / silence length (silence without it lasts until the client leaves)
    rest:
      - kind: "429"            # 429 | 500 | 503 | slow | expire_cursor
        path: /markets         # prefix of the path after /trade-api/v2 (omit = every path)
        after_requests: 3      # the Nth matching request (1-based) is the first one hit
        count: 2               # consecutive matching requests hit
        delay_s: 1.5           # for slow

CLI flags take the same fields inline: `--ws-fault kind=close,connection=1,after_messages=500`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

WsFaultKind = Literal[
    "close",
    "silence",
    "skip_seq",
    "duplicate",
    "reorder",
    "malformed",
    "truncated",
    "fragment",
    "unknown_type",
    "bad_utf8",
    "stall",
    "drop_delta",
    "lose_delta",
    "lose_trade",
]
RestFaultKind = Literal["429", "500", "503", "slow", "expire_cursor"]


class WsFault(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    kind: WsFaultKind
    connection: int | None = Field(None, ge=1)
    # With a channel, `connection` counts only connections whose first subscription is on that channel
    # (connections that reconnect count again), so a test can aim at "the 2nd orderbook connection".
    channel: str | None = None
    after_messages: int | None = Field(None, ge=0)
    after_s: float | None = Field(None, ge=0)
    duration_s: float | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _one_trigger(self) -> WsFault:
        if (self.after_messages is None) == (self.after_s is None):
            raise ValueError("give exactly one of after_messages or after_s")
        return self


class RestFault(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    kind: RestFaultKind
    path: str = ""
    after_requests: int = Field(1, ge=1)
    count: int = Field(1, ge=1)
    delay_s: float = Field(1.0, ge=0)


class FaultSchedule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    ws: list[WsFault] = []
    rest: list[RestFault] = []

    def for_connection(self, n: int) -> list[WsFault]:
        """Faults of the nth accepted connection (channel-less ones)."""
        return [f for f in self.ws if f.channel is None and (f.connection is None or f.connection == n)]

    def for_channel(self, channel: str, n: int) -> list[WsFault]:
        """Faults of the nth connection whose first subscription is on `channel`."""
        return [f for f in self.ws if f.channel == channel and (f.connection is None or f.connection == n)]


class FaultError(ValueError):
    """A fault schedule (file or flag) that does not validate; the message names the file and field."""


def _coerce(v: str) -> object:
    try:
        return int(v)
    except ValueError:
        try:
            return float(v)
        except ValueError:
            return v


def parse_inline(spec: str, model: type[WsFault] | type[RestFault]) -> WsFault | RestFault:
    """`kind=close,connection=1,after_messages=500` -> a fault."""
    fields: dict[str, object] = {}
    for part in filter(None, spec.split(",")):
        key, sep, value = part.partition("=")
        if not sep:
            raise FaultError(f"fault {spec!r}: expected key=value, got {part!r}")
        fields[key.strip()] = value.strip() if key.strip() == "kind" else _coerce(value.strip())
    try:
        return model.model_validate(fields)
    except ValidationError as exc:
        raise FaultError(f"fault {spec!r}: {exc.errors()[0]['msg']}") from None


def load_schedule(path: str | Path | None, ws: Sequence[str] = (), rest: Sequence[str] = ()) -> FaultSchedule:
    data: dict[str, object] = {}
    if path is not None:
        try:
            data = yaml.safe_load(Path(path).read_text()) or {}
            sched = FaultSchedule.model_validate(data)
        except (OSError, yaml.YAMLError) as exc:
            raise FaultError(f"{path}: {exc}") from None
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(p) for p in err["loc"])
            raise FaultError(f"{Path(path).name}: {where}: {err['msg']}") from None
    else:
        sched = FaultSchedule()
    extra_ws = [f for f in (parse_inline(s, WsFault) for s in ws) if isinstance(f, WsFault)]
    extra_rest = [f for f in (parse_inline(s, RestFault) for s in rest) if isinstance(f, RestFault)]
    return FaultSchedule(ws=[*sched.ws, *extra_ws], rest=[*sched.rest, *extra_rest])
