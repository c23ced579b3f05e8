#!/usr/bin/env python3
"""Dynamic inventory from Terraform outputs: `terraform output -json > tf-outputs.json` (or set
KD_TF_OUTPUTS to another file). Groups: gatherers (g1..g3, one per AZ) and dedup (the host whose instance
profile may write the lake). Hosts are addressed by instance id through the SSM connection plugin."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any


def inventory(outputs: dict[str, Any]) -> dict[str, Any]:
    hosts = outputs["gatherer_hosts"]["value"]
    dedup = outputs["dedup_host"]["value"]
    hostvars = {}
    for h in hosts:
        hostvars[h["gatherer_id"]] = {
            "ansible_host": h["instance_id"],
            "ansible_connection": "amazon.aws.aws_ssm",
            "private_ip": h["private_ip"],
            "availability_zone": h["az"],
            "gatherer_id": h["gatherer_id"],
        }
    dedup_name = next(h["gatherer_id"] for h in hosts if h["instance_id"] == dedup["instance_id"])
    common = {
        "production_db_endpoint": outputs["production_db_endpoint"]["value"],
        "lake_bucket": outputs["lake_bucket"]["value"],
        "parameter_prefix": outputs["parameter_prefix"]["value"],
    }
    return {
        "all": {"vars": common},
        "gatherers": {"hosts": [h["gatherer_id"] for h in hosts]},
        "dedup": {"hosts": [dedup_name]},
        "_meta": {"hostvars": hostvars},
    }


def main() -> int:
    path = Path(os.environ.get("KD_TF_OUTPUTS", Path(__file__).resolve().parents[2] / "tf-outputs.json"))
    if "--host" in sys.argv:
        print("{}")
        return 0
    if not path.exists():
        print(json.dumps({"_meta": {"hostvars": {}}}))
        return 0
    print(json.dumps(inventory(json.loads(path.read_text())), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
