"""`kalshi-data streams info|tail`: look into a gatherer's Redis streams with msgpack payloads decoded."""

from __future__ import annotations

import argparse
import json
from typing import Any


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("streams", help="inspect a gatherer's Redis streams")
    ssub = p.add_subparsers(dest="streams_command", required=True, metavar="ACTION")
    info = ssub.add_parser("info", help="length, groups and pending entries of every stream of a gatherer")
    info.add_argument("--config", required=True, help="gatherer.yaml")
    info.set_defaults(handler=run_info)
    tail = ssub.add_parser("tail", help="print the newest entries of a stream as JSON lines, decoded")
    tail.add_argument("stream", help="e.g. kd:g1:deltas or kd:g1:deadletter")
    tail.add_argument("-n", "--count", type=int, default=10, help="entries (default %(default)s)")
    tail.add_argument("--redis", default="redis://127.0.0.1:6379/0", help="Redis URL (default %(default)s)")
    tail.set_defaults(handler=run_tail)
    dead = ssub.add_parser("deadletter", help="recent dead-lettered frames, counted by reason, with examples")
    dead.add_argument("--config", required=True, help="gatherer.yaml")
    dead.add_argument("-n", "--count", type=int, default=1000, help="newest entries to read (default %(default)s)")
    dead.add_argument("--examples", type=int, default=3, help="raw frames shown per reason (default %(default)s)")
    dead.set_defaults(handler=run_deadletter)


def _jsonable(v: Any) -> Any:
    if isinstance(v, bytes):
        try:
            return v.decode()
        except UnicodeDecodeError:
            return v.hex()
    if isinstance(v, tuple | list):
        return [_jsonable(x) for x in v]
    return v


def decode_entry(entry_id: bytes, fields: dict[bytes, bytes]) -> dict[str, Any]:
    from core.codec import PAYLOAD_FIELD, DecodeError, decode_batch

    out: dict[str, Any] = {"id": entry_id.decode()}
    if PAYLOAD_FIELD in fields:
        try:
            kind, records = decode_batch(fields[PAYLOAD_FIELD])
        except DecodeError as exc:
            out["error"] = str(exc)
            return out
        out["kind"] = kind.name.lower()
        out["records"] = [r._asdict() if hasattr(r, "_asdict") else r for r in records]
    else:
        out.update({k.decode(): _jsonable(v) for k, v in fields.items()})
    return out


def run_tail(args: argparse.Namespace) -> int:
    import redis

    r = redis.Redis.from_url(args.redis)
    entries: Any = r.xrevrange(args.stream, count=args.count)
    for entry_id, fields in reversed(entries):
        print(json.dumps(decode_entry(entry_id, fields), default=_jsonable))
    return 0


def run_deadletter(args: argparse.Namespace) -> int:
    """Per reason: how many of the newest entries, the newest time, and a few raw frames (an operator learns
    of the next unknown field or message type from this, not from an audit)."""
    from core import keys
    from core.config import GathererConfig, load_config
    from core.redisconn import redis_from_config

    cfg = load_config(args.config, GathererConfig)
    r = redis_from_config(cfg.redis)
    entries: Any = r.xrevrange(keys.deadletter(cfg.redis.key_prefix, cfg.gatherer_id), count=args.count)
    by_reason: dict[str, dict[str, Any]] = {}
    for entry_id, fields in entries:  # newest first
        e = decode_entry(entry_id, fields)
        slot = by_reason.setdefault(str(e.get("reason")), {"count": 0, "newest": e["id"], "examples": []})
        slot["count"] += 1
        if len(slot["examples"]) < args.examples:
            slot["examples"].append({k: e.get(k) for k in ("id", "detail", "connection", "raw")})
    for reason, slot in sorted(by_reason.items(), key=lambda kv: -int(kv[1]["count"])):
        print(json.dumps({"reason": reason, **slot}, default=_jsonable))
    if not by_reason:
        print(f"no dead letter in {keys.deadletter(cfg.redis.key_prefix, cfg.gatherer_id)}: every frame was routed")
    return 0


def run_info(args: argparse.Namespace) -> int:
    from core import keys
    from core.config import GathererConfig, load_config
    from core.redisconn import redis_from_config

    cfg = load_config(args.config, GathererConfig)
    r = redis_from_config(cfg.redis)
    names = [keys.stream(cfg.redis.key_prefix, cfg.gatherer_id, k) for k in keys.STREAM_KINDS]
    names += [
        keys.deadletter(cfg.redis.key_prefix, cfg.gatherer_id),
        keys.writer_deadletter(cfg.redis.key_prefix, cfg.gatherer_id),
    ]
    for name in names:
        length = r.xlen(name)
        groups: Any = r.xinfo_groups(name) if length or r.exists(name) else []
        print(
            json.dumps(
                {
                    "stream": name,
                    "length": length,
                    "groups": [
                        {
                            "name": _jsonable(g["name"]),
                            "pending": g["pending"],
                            "lag": g.get("lag"),
                            "last_delivered": _jsonable(g["last-delivered-id"]),
                        }
                        for g in groups
                    ],
                }
            )
        )
    return 0
