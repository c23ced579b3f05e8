"""Infrastructure as code, checked without AWS: Terraform parsed and its properties asserted, checkov,
Prometheus rules with promtool, the Grafana dashboard, ansible-lint, playbook syntax, the kalshi_data role
rendered into a temporary root and its systemd units verified by systemd-analyze."""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
from pathlib import Path
from typing import Any

import hcl2
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
TF = REPO / "infra" / "terraform"
OPS_BIN = Path(os.environ.get("KD_OPS_BIN", REPO / ".venv-ops" / "bin"))


def _plain(v: Any) -> Any:
    """python-hcl2 keeps HCL quoting ('"gp3"') and block markers: strip them so values read naturally."""
    if isinstance(v, dict):
        return {_plain(k): _plain(x) for k, x in v.items() if not str(k).startswith("__")}
    if isinstance(v, list):
        return [_plain(x) for x in v]
    if isinstance(v, str) and len(v) >= 2 and v[0] == v[-1] == '"':
        return v[1:-1]
    return v


def tf(path: str) -> dict[str, Any]:
    with (TF / path).open() as f:
        return dict(_plain(hcl2.load(f)))


def resources(doc: dict[str, Any], rtype: str) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for block in doc.get("resource", []):
        for name, body in block.get(rtype, {}).items():
            out[name] = body
    return out


def test_every_terraform_file_parses() -> None:
    files = list(TF.rglob("*.tf")) + list(TF.rglob("*.tfvars"))
    assert len(files) >= 12
    for f in files:
        with f.open() as fh:
            hcl2.load(fh)


def test_three_azs_private_subnets_and_nat_per_az() -> None:
    main = tf("main.tf")
    network = next(m["network"] for m in main["module"] if "network" in m)
    assert "slice(data.aws_availability_zones.available.names, 0, 3)" in network["azs"]
    net = tf("modules/network/main.tf")
    for kind in ("aws_subnet", "aws_nat_gateway", "aws_route_table_association"):
        assert all("length(var.azs)" in str(r["count"]) for r in resources(net, kind).values()), kind
    assert resources(net, "aws_subnet")["public"]["map_public_ip_on_launch"] is False
    assert resources(net, "aws_vpc_endpoint")["s3"]["vpc_endpoint_type"] == "Gateway"
    for name, sg in resources(net, "aws_security_group").items():
        for rule in sg.get("ingress", []):
            assert "0.0.0.0/0" not in str(rule.get("cidr_blocks", "")), name  # nothing open to the world


def test_gatherers_one_per_az_encrypted_imdsv2_no_public_ip() -> None:
    g = tf("modules/gatherer/main.tf")
    inst = resources(g, "aws_instance")["gatherer"]
    assert "length(var.subnet_ids)" in str(inst["count"])
    assert inst["metadata_options"][0]["http_tokens"] == "required"
    assert inst["root_block_device"][0]["encrypted"] is True
    assert "associate_public_ip_address" not in inst
    vol = resources(g, "aws_ebs_volume")["data"]
    assert vol["encrypted"] is True and vol["type"] == "gp3"


def test_rds_multi_az_encrypted_tls_private_backed_up() -> None:
    d = tf("modules/database/main.tf")
    db = resources(d, "aws_db_instance")["this"]
    assert db["multi_az"] is True and db["storage_encrypted"] is True and db["publicly_accessible"] is False
    assert db["backup_retention_period"] >= 7 and db["deletion_protection"] is True
    assert db["engine"] == "postgres"
    params = {p["name"]: p["value"] for p in resources(d, "aws_db_parameter_group")["this"]["parameter"]}
    assert params["rds.force_ssl"] == "1"


def test_lake_versioned_kms_private_tls_only_with_tiers() -> None:
    lake = tf("modules/lake/main.tf")
    assert resources(lake, "aws_s3_bucket_versioning")["lake"]["versioning_configuration"][0]["status"] == "Enabled"
    sse = resources(lake, "aws_s3_bucket_server_side_encryption_configuration")["lake"]
    assert sse["rule"][0]["apply_server_side_encryption_by_default"][0]["sse_algorithm"] == "aws:kms"
    pab = resources(lake, "aws_s3_bucket_public_access_block")["lake"]
    assert all(
        pab[k] is True
        for k in ("block_public_acls", "block_public_policy", "ignore_public_acls", "restrict_public_buckets")
    )
    policy = resources(lake, "aws_s3_bucket_policy")["tls_only"]["policy"]
    assert "aws:SecureTransport" in policy and "Deny" in policy
    rules = resources(lake, "aws_s3_bucket_lifecycle_configuration")["lake"]["rule"][0]
    assert [t["storage_class"] for t in rules["transition"]] == ["STANDARD_IA", "GLACIER_IR"]


def test_iam_gatherers_cannot_write_the_lake_dedup_can() -> None:
    iam = tf("modules/iam/main.tf")
    policies = resources(iam, "aws_iam_role_policy")
    gatherer_docs = [p["policy"] for name, p in policies.items() if p["role"].startswith("${aws_iam_role.gatherer")]
    assert gatherer_docs and all("lake_write" not in d for d in gatherer_docs)
    assert any("lake_write" in p["policy"] and p["role"].startswith("${aws_iam_role.dedup") for p in policies.values())
    text = (TF / "modules/iam/main.tf").read_text()
    assert '"s3:*"' not in text and '"*"' not in text.split("lake_write")[0].split("common")[1]


def test_secrets_are_securestring_names_only_and_kms_rotates() -> None:
    s = tf("modules/secrets/main.tf")
    params = resources(s, "aws_ssm_parameter")["this"]
    assert params["type"] == "SecureString" and "value" in str(params["lifecycle"][0]["ignore_changes"])
    assert resources(s, "aws_kms_key")["this"]["enable_key_rotation"] is True


def test_alarms_cover_capture_connections_backlog_disk_dedup_export() -> None:
    m = tf("modules/monitoring/main.tf")
    alarms = resources(m, "aws_cloudwatch_metric_alarm")
    assert {
        "capturing_nothing",
        "connections_down",
        "backlog",
        "disk",
        "dedup_lag",
        "export_late",
        "book_audit_mismatch",
    } <= set(alarms)
    assert all("aws_sns_topic.alarms.arn" in str(a["alarm_actions"]) for a in alarms.values())
    json.loads((TF / "modules/monitoring/cloudwatch-agent.json").read_text())


def test_checkov_passes() -> None:
    checkov = OPS_BIN / "checkov"
    assert checkov.exists(), "run `make ops-tools`"
    out = subprocess.run(
        [
            str(checkov),
            "-d",
            str(TF),
            "--framework",
            "terraform",
            "--quiet",
            "--compact",
            "--skip-download",
            "-o",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    report = json.loads(out.stdout)
    summary = report["summary"] if isinstance(report, dict) else report[0]["summary"]
    assert summary["failed"] == 0 and summary["passed"] > 100, summary
    skips = re.findall(r"#checkov:skip=(\S+):(.+)", "\n".join(p.read_text() for p in TF.rglob("*.tf")))
    assert all(len(reason.strip()) > 20 for _, reason in skips)  # every skip says why


# ---- Prometheus and Grafana -------------------------------------------------------------------------------


def defined_metrics() -> set[str]:
    text = (REPO / "core" / "metrics.py").read_text()
    return set(re.findall(r'\(\s*"(kd_[a-z_]+)"', text))


def used_metrics(text: str) -> set[str]:
    names = set(re.findall(r"\b(kd_[a-z_]+)", text))
    return {re.sub(r"_(bucket|count|sum)$", "", n) for n in names}


def test_alert_rules_and_dashboard_use_only_defined_metrics() -> None:
    defined = defined_metrics()
    counters = {n + "_total" for n in defined if not n.endswith("_total")}
    known = defined | counters
    alerts = (REPO / "infra/prometheus/alerts.yml").read_text()
    dash = (REPO / "infra/grafana/dashboards/kalshi-data.json").read_text()
    assert used_metrics(alerts) <= known, used_metrics(alerts) - known
    assert used_metrics(dash) <= known, used_metrics(dash) - known
    names = {r["alert"] for g in yaml.safe_load(alerts)["groups"] for r in g["rules"]}
    assert {
        "GathererCapturingNothing",
        "ConnectionsBelowDesired",
        "SequenceGapRateHigh",
        "StreamBacklogGrowing",
        "WriterErrors",
        "DedupLagging",
        "ExportLate",
        "DiskFilling",
    } <= names
    board = json.loads(dash)
    assert board["uid"] == "kalshi-data" and len(board["panels"]) >= 12


def test_promtool_checks_rules_and_config() -> None:
    promtool = shutil.which("promtool")
    assert promtool, "promtool comes with Debian's prometheus package (`make ops-tools` installs it)"
    rules = subprocess.run(
        [promtool, "check", "rules", str(REPO / "infra/prometheus/alerts.yml")], capture_output=True, text=True
    )
    assert rules.returncode == 0 and "SUCCESS" in rules.stdout, rules.stdout + rules.stderr
    cfg = subprocess.run(
        [promtool, "check", "config", str(REPO / "infra/prometheus/prometheus.yml")], capture_output=True, text=True
    )
    assert cfg.returncode == 0, cfg.stdout + cfg.stderr


def test_compose_provisions_prometheus_and_grafana() -> None:
    services = yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"]
    assert "./infra/prometheus/alerts.yml:/etc/prometheus/alerts.yml:ro" in services["prometheus"]["volumes"]
    assert any("dashboards" in v for v in services["grafana"]["volumes"])


# ---- Ansible ------------------------------------------------------------------------------------------------


def ansible(cmd: str, *args: str) -> subprocess.CompletedProcess[str]:
    exe = OPS_BIN / cmd
    assert exe.exists(), "run `make ops-tools`"
    env = {
        **os.environ,
        "ANSIBLE_CONFIG": str(REPO / "ansible/ansible.cfg"),
        "ANSIBLE_NOCOLOR": "1",
        "PATH": f"{OPS_BIN}:{os.environ['PATH']}",
    }
    return subprocess.run([str(exe), *args], cwd=REPO / "ansible", capture_output=True, text=True, env=env, timeout=600)


def test_ansible_lint_production_profile() -> None:
    out = ansible("ansible-lint", "--nocolor")
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]


@pytest.mark.parametrize("playbook", ["site.yml", "rollout.yml", "dedup.yml", "render.yml"])
def test_playbook_syntax(playbook: str) -> None:
    out = ansible("ansible-playbook", "-i", "inventory/local.yml", "--syntax-check", playbook)
    assert out.returncode == 0, out.stdout + out.stderr


def test_rollout_is_one_host_at_a_time_with_a_health_gate() -> None:
    plays = yaml.safe_load((REPO / "ansible/rollout.yml").read_text())
    assert plays[0]["serial"] == 1 and plays[0]["max_fail_percentage"] == 0
    gate = plays[0]["post_tasks"][0]
    assert gate["ansible.builtin.uri"]["url"].endswith("/readyz") and gate["until"] == "kd_ready.status == 200"


def test_terraform_inventory_groups_hosts() -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("inv", REPO / "ansible/inventory/terraform_inventory.py")
    assert spec and spec.loader
    inv = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(inv)
    hosts = [
        {"gatherer_id": f"g{i}", "instance_id": f"i-{i}", "private_ip": f"10.40.{i}.5", "az": f"us-east-1{c}"}
        for i, c in ((1, "a"), (2, "b"), (3, "c"))
    ]
    outputs = {
        "gatherer_hosts": {"value": hosts},
        "dedup_host": {"value": {"instance_id": "i-1"}},
        "production_db_endpoint": {"value": "db:5432"},
        "lake_bucket": {"value": "lake"},
        "parameter_prefix": {"value": "/kd"},
    }
    out = inv.inventory(outputs)
    assert out["gatherers"]["hosts"] == ["g1", "g2", "g3"] and out["dedup"]["hosts"] == ["g1"]
    assert out["_meta"]["hostvars"]["g2"]["ansible_connection"] == "amazon.aws.aws_ssm"


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("root")
    prefix = root / "opt" / "kalshi-data"
    out = ansible(
        "ansible-playbook",
        "-i",
        "inventory/local.yml",
        "render.yml",
        "-e",
        f"kd_root={root}",
        "-e",
        f"kd_prefix={prefix}",
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    (prefix / "venv" / "bin").mkdir(parents=True)
    for exe in ("kalshi-data", "rq"):  # systemd-analyze checks that ExecStart points at an executable
        p = prefix / "venv" / "bin" / exe
        p.write_text("#!/bin/sh\n")
        p.chmod(0o755)
    return root


def test_rendered_units_pass_systemd_analyze_verify(rendered: Path) -> None:
    units = rendered / "etc/systemd/system"
    names = sorted(p.name for p in units.iterdir())
    assert names == [
        "kalshi-db-maintain.service",
        "kalshi-db-maintain.timer",
        "kalshi-dedup-scheduler.service",
        "kalshi-dedup-worker.service",
        "kalshi-gatherer.service",
        "kalshi-writer@.service",
    ]
    shutil.copy(units / "kalshi-writer@.service", units / "kalshi-writer@deltas-1.service")
    check = [n for n in names if n != "kalshi-writer@.service"] + ["kalshi-writer@deltas-1.service"]
    out = subprocess.run(["systemd-analyze", "verify", *check], cwd=units, capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == "" and out.stderr.strip() == "", out.stdout + out.stderr
    for name in ("kalshi-gatherer.service", "kalshi-writer@.service", "kalshi-dedup-worker.service"):
        text = (units / name).read_text()
        for line in ("NoNewPrivileges=yes", "ProtectSystem=strict", "User=kalshi", "Restart=always"):
            assert line in text, (name, line)


def test_rendered_configs_load_and_secret_files_are_private(rendered: Path) -> None:
    from core.config import DeduplicatorConfig, GathererConfig, load_config

    etc = rendered / "etc/kalshi-data"
    env = {"PGPASSWORD": "x", "PROD_PGPASSWORD": "y", "REDIS_PASSWORD": "z"}
    g = load_config(etc / "gatherer.yaml", GathererConfig, env=env)
    assert g.gatherer_id == "g1" and g.kalshi.rest_url.startswith("https://api.elections.kalshi.com")
    d = load_config(etc / "deduplicator.yaml", DeduplicatorConfig, env=env)
    assert d.export.target == "s3://kalshi-data-local-lake/v1" and d.production.sslmode == "verify-full"
    for secret in ("kalshi.pem", "kalshi-data.env"):
        assert stat.S_IMODE((etc / secret).stat().st_mode) == 0o600, secret
