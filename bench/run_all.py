"""Run every benchmark module under bench/ and print one JSON document per benchmark."""

from __future__ import annotations

import importlib
import json
import pkgutil
import sys

import bench


def main() -> int:
    names = sorted(m.name for m in pkgutil.iter_modules(bench.__path__) if m.name.startswith("bench_"))
    for name in names:
        module = importlib.import_module(f"bench.{name}")
        result = module.run()
        print(json.dumps({"benchmark": name, **result}), flush=True)
    if not names:
        print(json.dumps({"benchmark": None, "note": "no benchmarks yet"}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
