"""Run every benchmark module under bench/ and print one JSON document per benchmark."""

from __future__ import annotations

import importlib
import json
import pkgutil
import sys

import bench


def names() -> list[str]:
    return sorted(m.name for m in pkgutil.iter_modules(bench.__path__) if m.name.startswith("bench_"))


def main() -> int:
    """Every benchmark, one after the other; one that fails prints its error and the rest still run (the exit
    code then says so)."""
    failed = []
    for name in names():
        try:
            module = importlib.import_module(f"bench.{name}")
            result = module.run()
        except Exception as exc:
            failed.append(name)
            print(json.dumps({"benchmark": name, "error": f"{type(exc).__name__}: {exc}"}), flush=True)
            continue
        print(json.dumps({"benchmark": name, **result}), flush=True)
    if failed:
        print(json.dumps({"failed": failed}), file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
