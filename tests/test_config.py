"""Config loading: substitution, validation messages by their text, secrets never shown."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from core.config import (
    SECRET_MARK,
    ConfigError,
    DeduplicatorConfig,
    GathererConfig,
    detect_config_model,
    load_config,
    redacted,
)

REPO = Path(__file__).resolve().parents[1]


def write(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def test_defaults_fill_everything_but_gatherer_id(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, "g.yaml", "gatherer_id: g7\n"), GathererConfig, env={})
    assert cfg.gatherer_id == "g7"
    assert cfg.database.port == 5432
    assert cfg.kalshi.rest_url == "http://127.0.0.1:8765/trade-api/v2"
    assert cfg.websocket.markets_per_connection == 7500


def test_wrong_type_names_file_key_and_expectation(tmp_path: Path) -> None:
    p = write(tmp_path, "gatherer.yaml", "gatherer_id: g1\ndatabase:\n  port: abc\n")
    with pytest.raises(ConfigError) as err:
        load_config(p, GathererConfig, env={})
    assert str(err.value) == 'gatherer.yaml: database.port: expected integer, got "abc"'


def test_missing_required_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, "g.yaml", "database: {}\n"), GathererConfig, env={})
    assert str(err.value) == "g.yaml: gatherer_id: required key is missing"


def test_unknown_key_is_rejected_not_ignored(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, "g.yaml", "gatherer_id: g1\ndatabse: {}\n"), GathererConfig, env={})
    assert str(err.value) == "g.yaml: databse: unknown key"


def test_a_removed_key_says_what_to_do(tmp_path: Path) -> None:
    text = "gatherer_id: g1\nwebsocket:\n  compression: false\n"
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, "g.yaml", text), GathererConfig, env={})
    assert str(err.value) == (
        "g.yaml: websocket.compression: no longer a setting (the WebSocket client, picows, has no "
        "permessage-deflate): delete the line"
    )


def test_nested_list_path(tmp_path: Path) -> None:
    text = "production: {}\nsources:\n  - gatherer_id: g1\n    database: {port: 5432}\n  - gatherer_id: g2\n"
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, "d.yaml", text), DeduplicatorConfig, env={})
    assert str(err.value) == "d.yaml: sources[1].database: required key is missing"


def test_env_substitution_with_and_without_default(tmp_path: Path) -> None:
    p = write(tmp_path, "g.yaml", "gatherer_id: ${GID}\ndatabase:\n  port: ${PORT:-6543}\n  dbname: x_${GID}\n")
    cfg = load_config(p, GathererConfig, env={"GID": "h2"})
    assert (cfg.gatherer_id, cfg.database.port, cfg.database.dbname) == ("h2", 6543, "x_h2")
    cfg = load_config(p, GathererConfig, env={"GID": "h2", "PORT": "7000"})
    assert cfg.database.port == 7000


def test_unset_variable_without_default_names_the_variable(tmp_path: Path) -> None:
    p = write(tmp_path, "g.yaml", "gatherer_id: g1\ndatabase:\n  password: ${PGPASS}\n")
    with pytest.raises(ConfigError) as err:
        load_config(p, GathererConfig, env={})
    assert "g.yaml: database.password: environment variable PGPASS is not set" in str(err.value)


def test_invalid_yaml_names_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, "g.yaml", "gatherer_id: [g1\n"), GathererConfig, env={})
    assert str(err.value).startswith("g.yaml: line ")
    assert "invalid YAML" in str(err.value)


def test_secret_never_in_error_or_redacted_output(tmp_path: Path) -> None:
    p = write(tmp_path, "g.yaml", "gatherer_id: g1\ndatabase:\n  password: hunter2\n")
    cfg = load_config(p, GathererConfig, env={})
    assert cfg.database.password is not None
    assert cfg.database.password.get_secret_value() == "hunter2"
    assert "hunter2" not in repr(cfg)
    assert redacted(cfg)["database"]["password"] == SECRET_MARK
    bad = write(tmp_path, "b.yaml", "gatherer_id: g1\ndatabase:\n  password: [hunter2]\n")
    with pytest.raises(ConfigError) as err:
        load_config(bad, GathererConfig, env={})
    assert "database.password" in str(err.value)
    assert "hunter2" not in str(err.value)


@pytest.mark.parametrize("name", ["gatherer.example.yaml", "deduplicator.example.yaml", "backfill.example.yaml"])
def test_example_configs_are_valid(name: str) -> None:
    cfg = load_config(REPO / "config" / name, detect_config_model(REPO / "config" / name), env={})
    assert type(cfg).__name__.lower().startswith(name.split(".")[0])


def _ed25519_key(path: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    key = ed25519.Ed25519PrivateKey.generate()
    path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    path.chmod(0o600)


def test_config_check_cli_hides_secrets_and_names_the_key_type(tmp_path: Path) -> None:
    _ed25519_key(tmp_path / "k.pem")
    p = write(
        tmp_path,
        "g.yaml",
        f"gatherer_id: g1\ndatabase:\n  password: s3cret-pw\nkalshi:\n  api_key_id: abc\n"
        f"  private_key_path: {tmp_path / 'k.pem'}\n",
    )
    out = subprocess.run(
        [sys.executable, "-m", "cli.main", "config", "check", str(p)], capture_output=True, text=True, cwd=REPO
    )
    assert out.returncode == 0, out.stderr
    assert "s3cret-pw" not in out.stdout + out.stderr
    assert str(tmp_path / "k.pem") not in out.stdout + out.stderr
    assert SECRET_MARK in out.stdout
    assert "kalshi.private_key_path: an Ed25519 private key, readable by its owner only" in out.stdout
    # a key file others may read: the error names the setting, not the path
    (tmp_path / "k.pem").chmod(0o644)
    out = subprocess.run(
        [sys.executable, "-m", "cli.main", "config", "check", str(p)], capture_output=True, text=True, cwd=REPO
    )
    assert out.returncode == 2
    assert "kalshi.private_key_path) is accessible by group or others (mode 644)" in out.stderr
    assert str(tmp_path / "k.pem") not in out.stdout + out.stderr


def test_config_check_cli_reports_error_and_exit_code(tmp_path: Path) -> None:
    p = write(tmp_path, "gatherer.yaml", "gatherer_id: g1\ndatabase:\n  port: abc\n")
    out = subprocess.run(
        [sys.executable, "-m", "cli.main", "config", "check", str(p)], capture_output=True, text=True, cwd=REPO
    )
    assert out.returncode == 2
    assert 'gatherer.yaml: database.port: expected integer, got "abc"' in out.stderr
