"""Entry point of `kalshi-data`. Subcommands import their package only when run."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence

from core.config import ConfigError

EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2

Handler = Callable[[argparse.Namespace], int]


def _cmd_migrate(args: argparse.Namespace) -> int:
    from core.migrations import migrate

    dsn = args.dsn or _dsn_from_config_file(args.config, args.role)
    applied = migrate(dsn, args.role, args.timescaledb)
    if applied:
        for name in applied:
            print(f"applied {name}")
    else:
        print("schema is up to date")
    return EXIT_OK


def _dsn_from_config_file(path: str | None, role: str) -> str:
    from core.config import BackfillConfig, DeduplicatorConfig, GathererConfig, detect_config_model, load_config
    from core.db import dsn_from_config

    if path is None:
        raise ConfigError("give --dsn or --config")
    if role == "production":  # deduplicator.yaml or backfill.yaml: both name production
        if detect_config_model(path) is BackfillConfig:
            return dsn_from_config(load_config(path, BackfillConfig).production)
        return dsn_from_config(load_config(path, DeduplicatorConfig).production)
    return dsn_from_config(load_config(path, GathererConfig).database)


def _cmd_config_check(args: argparse.Namespace) -> int:
    from core.config import detect_config_model, load_config, redacted

    model = detect_config_model(args.file)
    cfg = load_config(args.file, model)
    print(f"{args.file}: valid {model.__name__}")
    print(json.dumps(redacted(cfg), indent=2, default=str))
    kalshi = getattr(cfg, "kalshi", None)
    if kalshi is not None and kalshi.private_key_path is not None:
        # the key's type, never the key: the file is loaded as the gatherer will (permissions checked)
        from gatherer import KeyFileError, signer_from_config

        try:
            signer = signer_from_config(kalshi.api_key_id, kalshi.private_key_path.get_secret_value())
        except KeyFileError as exc:
            raise ConfigError(f"{args.file}: kalshi.private_key_path: {exc}") from None
        assert signer is not None
        name = signer.key_type.upper() if signer.key_type.startswith("rsa") else "Ed25519"
        print(f"kalshi.private_key_path: an {name} private key, readable by its owner only")
    return EXIT_OK


def _cmd_db_maintain(args: argparse.Namespace) -> int:
    import time

    from core.config import DeduplicatorConfig, detect_config_model, load_config
    from core.db import dsn_from_config
    from core.migrations import apply_timescale_policies, maintain_partitions

    model = detect_config_model(args.config)  # gatherer.yaml: its database; deduplicator.yaml: production
    cfg = load_config(args.config, model)
    db = cfg.production if isinstance(cfg, DeduplicatorConfig) else cfg.database  # type: ignore[attr-defined]
    dsn = args.dsn or dsn_from_config(db)
    r = cfg.retention  # type: ignore[attr-defined]
    now_us = time.time_ns() // 1000
    result = maintain_partitions(dsn, now_us, r.partitions_ahead_days, r.retain_days)
    result["timescale_policies"] = apply_timescale_policies(dsn, r.compress_after_days, r.retain_days)
    print(json.dumps(result))
    return EXIT_OK


def _cmd_gather(args: argparse.Namespace) -> int:
    from core.config import GathererConfig, load_config
    from gatherer import run_gatherer

    return run_gatherer(load_config(args.config, GathererConfig))


def _cmd_probe(args: argparse.Namespace) -> int:
    import asyncio

    from core.config import GathererConfig, load_config
    from gatherer import Probe

    cfg = load_config(args.config, GathererConfig)
    logging.getLogger().setLevel(logging.ERROR)  # the steps say what happens; the connection's logs would repeat it
    ok = asyncio.run(Probe(cfg, live_wait_s=args.wait).run())
    return EXIT_OK if ok else EXIT_ERROR


def _cmd_write(args: argparse.Namespace) -> int:
    from core.config import GathererConfig, load_config
    from writers import run_write_process

    return run_write_process(load_config(args.config, GathererConfig), args.streams.split(","), args.consumer)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="kalshi-data", description="Capture all public Kalshi market data.")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    p.add_argument("--debug", action="store_true", help="on an error, the traceback instead of one line")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    m = sub.add_parser("migrate", help="create or upgrade a database schema")
    m.add_argument("--dsn", help="libpq connection string (else taken from --config)")
    m.add_argument("--config", help="gatherer.yaml or deduplicator.yaml to take the database from")
    m.add_argument("--role", choices=("gatherer", "production"), default="gatherer")
    m.add_argument(
        "--timescaledb",
        choices=("auto", "require", "off"),
        default="auto",
        help="gatherer role: use TimescaleDB where the server has it (auto), insist (require), or not",
    )
    m.set_defaults(handler=_cmd_migrate)

    c = sub.add_parser("config", help="config file tools")
    csub = c.add_subparsers(dest="config_command", required=True, metavar="ACTION")
    cc = csub.add_parser("check", help="validate a config file and print it with secrets hidden")
    cc.add_argument("file")
    cc.set_defaults(handler=_cmd_config_check)

    d = sub.add_parser("db", help="database maintenance")
    dsub = d.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    dm = dsub.add_parser("maintain", help="create partitions ahead, apply retention/compression policies")
    dm.add_argument("--config", required=True)
    dm.add_argument("--dsn")
    dm.set_defaults(handler=_cmd_db_maintain)

    from cli import backfill as backfill_cmd
    from cli import dedup as dedup_cmd
    from cli import sim as sim_cmd
    from cli import streams as streams_cmd

    sim_cmd.add_parser(sub).set_defaults(handler=sim_cmd.run)
    streams_cmd.add_parser(sub)
    dedup_cmd.add_parsers(sub)
    backfill_cmd.add_parser(sub)

    w = sub.add_parser("write", help="run a writer: Redis streams -> the gatherer database")
    w.add_argument("--config", required=True, help="gatherer.yaml")
    w.add_argument(
        "--streams",
        default=",".join(("trades", "deltas", "snapshots", "tickers", "lifecycle", "reference", "gaps")),
        help="comma list of stream kinds (default: all)",
    )
    w.add_argument("--consumer", default=None, help="consumer name, unique and stable (default: <host>-writer)")
    w.set_defaults(handler=_cmd_write)

    pr = sub.add_parser("probe", help="a new setup's first contact with the exchange: each step checked, one line each")
    pr.add_argument("--config", required=True, help="gatherer.yaml")
    pr.add_argument("--wait", type=float, default=60.0, help="seconds to wait for a trade or a ticker (default 60)")
    pr.set_defaults(handler=_cmd_probe)

    g = sub.add_parser("gather", help="run one gatherer host: registry, WebSockets, router, poller")
    g.add_argument("--config", required=True, help="gatherer.yaml")
    g.set_defaults(handler=_cmd_gather)

    from cli import demo as demo_cmd
    from cli import query as query_cmd

    query_cmd.add_parsers(sub)

    demo_cmd.add_parser(sub)

    return p


def describe(exc: BaseException) -> tuple[int, str]:
    """An error as one line saying what went wrong and what to do, and the exit code (2: fix the input)."""
    import psycopg

    from core.conversions import ConversionError
    from core.migrations import MigrationError

    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if isinstance(exc, ConfigError):
        return EXIT_USAGE, f"config error: {str(exc).strip()}"
    if isinstance(exc, ConversionError):
        return EXIT_USAGE, first
    if isinstance(exc, MigrationError):
        return EXIT_ERROR, f"migration error: {first}"
    if isinstance(exc, psycopg.OperationalError):
        return EXIT_ERROR, f"cannot use the database: {first} (is PostgreSQL up, and --dsn or the config right?)"
    if isinstance(exc, psycopg.Error):
        return EXIT_ERROR, f"database error: {first}"
    if type(exc).__module__.startswith(("duckdb", "_duckdb")):
        return EXIT_USAGE, f"lake sql: {first}"
    if type(exc).__name__ in ("KeyFileError", "LakeMissing"):
        return EXIT_USAGE, first
    if isinstance(exc, LookupError | FileNotFoundError):
        return EXIT_ERROR, first
    return EXIT_ERROR, f"{type(exc).__name__}: {first} (run again with --debug for the traceback)"


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    handler: Handler = args.handler
    try:
        return handler(args)
    except BrokenPipeError:
        # the output went to a pipe its reader closed (`| head`): it has what it wanted. Python would complain
        # again when it flushes stdout at exit: point stdout at nothing first.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_OK
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        if args.debug:
            raise
        code, line = describe(exc)
        print(f"kalshi-data {args.command}: {line}", file=sys.stderr)
        return code


if __name__ == "__main__":
    sys.exit(main())
