"""`kalshi-data probe` against the simulator: a good RSA key, a good Ed25519 key, a key id Kalshi does not know,
a key of the other type than the one registered, a clock two minutes off, no key, no exchange. Every step prints
one line; a refused signature names its cause; the exit is 0 only when every step passed."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from core.config import GathererConfig, KalshiConfig
from devstack import free_port
from gatherer import Probe
from tests.gatherkit import FAST_WS
from tests.simkit import running_sim

REPO = Path(__file__).resolve().parents[1]


def make_key(d: Path, name: str, kind: str) -> Path:
    key: Any = ed25519.Ed25519PrivateKey.generate() if kind == "ed25519" else rsa.generate_private_key(65537, 2048)
    path = d / f"{name}.pem"
    path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    os.chmod(path, 0o600)
    (d / f"{name}.pub").write_bytes(
        key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return path


def config(sim: Any, key_id: str | None, key: Path | None) -> GathererConfig:
    return GathererConfig(
        gatherer_id="p1",
        kalshi=KalshiConfig(
            rest_url=sim.rest_url, ws_url=sim.ws_url, api_key_id=key_id,
            private_key_path=None if key is None else str(key),
        ),
        websocket=FAST_WS,
    )  # fmt: skip


async def probe(cfg: GathererConfig, clock_offset_s: float = 0) -> tuple[bool, list[str]]:
    lines: list[str] = []
    p = Probe(cfg, clock_ms=lambda: int((time.time() + clock_offset_s) * 1000), live_wait_s=10, out=lines.append)
    return await p.run(), lines


@pytest.mark.parametrize("kind", ["rsa", "ed25519"])
async def test_a_good_key_of_either_type_passes_every_step(tmp_path: Path, kind: str) -> None:
    key = make_key(tmp_path, "good", kind)
    async with running_sim(rate=300, markets=60, active=20, public_keys=[f"k1={tmp_path / 'good.pub'}"]) as sim:
        ok, lines = await probe(config(sim, "k1", key))
    assert ok, lines
    assert [line.split()[:2] for line in lines] == [
        ["ok", name] for name in ("exchange", "key", "signed", "websocket", "book", "live")
    ]
    assert ("an RSA-2048 private key" if kind == "rsa" else "an Ed25519 private key") in lines[1]
    assert str(key) not in "\n".join(lines)  # the path is a secret of the config


async def test_each_refusal_names_its_cause(tmp_path: Path) -> None:
    good = make_key(tmp_path, "good", "rsa")
    other_type = make_key(tmp_path, "other", "ed25519")
    async with running_sim(markets=30, active=5, public_keys=[f"k1={tmp_path / 'good.pub'}"], max_skew_s=60) as sim:
        cases = {
            "unknown key id": (config(sim, "nobody", good), 0.0, "Kalshi does not know key id nobody"),
            "a key of the other type": (config(sim, "k1", other_type), 0.0, "does not match the key registered for k1"),
            # the server's Date header counts whole seconds: 119 to 121
            "a clock two minutes slow": (
                config(sim, "k1", good),
                -120.0,
                r"this clock is 1(19|20|21) s behind Kalshi's",
            ),
        }
        for case, (cfg, offset, cause) in cases.items():
            ok, lines = await probe(cfg, offset)
            assert not ok, case
            signed = next(line for line in lines if line.split()[1] == "signed")
            assert signed.startswith("FAIL") and re.search(cause, signed), (case, signed)
            assert all(line.startswith("skip") for line in lines[lines.index(signed) + 1 :]), lines
        ok, lines = await probe(config(sim, None, None))
        assert not ok and lines[1].startswith("FAIL  key") and "no key configured" in lines[1], lines


async def test_no_exchange_at_the_url() -> None:
    port = free_port()
    cfg = GathererConfig(
        gatherer_id="p1",
        kalshi=KalshiConfig(rest_url=f"http://127.0.0.1:{port}/trade-api/v2", ws_url=f"ws://127.0.0.1:{port}/x"),
    )
    ok, lines = await probe(cfg)
    assert not ok and lines[0].startswith("FAIL  exchange") and "check kalshi.rest_url" in lines[0], lines
    assert len(lines) == 6


def test_the_command_exits_non_zero_naming_the_step(tmp_path: Path) -> None:
    port = free_port()
    (tmp_path / "g.yaml").write_text(
        f"gatherer_id: p1\nkalshi:\n  rest_url: http://127.0.0.1:{port}/trade-api/v2\n"
        f"  ws_url: ws://127.0.0.1:{port}/trade-api/ws/v2\n"
    )
    out = subprocess.run(
        [sys.executable, "-m", "cli.main", "probe", "--config", str(tmp_path / "g.yaml")],
        capture_output=True, text=True, cwd=REPO, timeout=60,
    )  # fmt: skip
    assert out.returncode == 1 and out.stdout.startswith("FAIL  exchange"), (out.stdout, out.stderr)
    assert "Traceback" not in out.stderr
