"""The README's examples, run as written: its config and hook call against a real daemon on
OpenBao and the emulator, and the demo command a newcomer types from a fresh checkout; and every
TOML example of the README and the operator guide, validated as a configuration."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import time
import tomllib
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from rotator.cli.parser import build_parser
from rotator.config import Settings, parse_settings
from rotator.demo.openbao import free_port
from rotator.emulator.server import INTERCOM_EMULATOR_TOKEN

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()
GUIDE = (REPO / "docs" / "operator-guide.md").read_text()
DOCS = {"README.md": README, "docs/operator-guide.md": GUIDE}
ROTATOR = [sys.executable, "-m", "rotator"]
HOOK_TOKEN = "readme-hook-token-0123456789"


def _fenced(language: str, text: str = README) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", text, re.DOTALL)


#: What a TOML fragment of the docs leaves out ("# ... as today ..."), so that it validates as
#: the whole file it belongs to: a Vault, a hook credential, and each target's required keys.
_BASE: dict[str, Any] = {
    "vault": {"address": "https://vault.example.com:8200"},
    "server": {"hook_token_env": "ROTATOR_HOOK_TOKEN"},
}


def _as_config(block: str) -> dict[str, Any]:
    """A doc's TOML block as a whole configuration: as written when it has a [vault], else its
    sections over ``_BASE``, each target completed with the required keys it leaves out (a
    block of ``[[targets.consumers]]`` alone is a ``confirmation = "consumers"`` target's)."""
    raw = tomllib.loads(block)
    if "vault" in raw:
        return raw
    targets = raw.get("targets", [{}])
    if isinstance(targets, dict):  # [[targets.consumers]] without [[targets]] above it
        targets = [{"confirmation": "consumers", **targets}]
    completed = []
    for target in targets:
        name = target.get("name", "web")
        completed.append(
            {
                "name": name,
                "token_env": "INTERCOM_TOKEN",
                "secret_name": f"Production {name}",
                "vault_path": f"intercom/identity-verification/{name}",
                **target,
            }
        )
    return _BASE | raw | {"targets": completed}


def _doc_settings(doc: str) -> list[Settings]:
    return [
        parse_settings(_as_config(block), source=f"{doc} toml block {i}")
        for i, block in enumerate(_fenced("toml", DOCS[doc]))
    ]


def _readme_config(vault: str, intercom: str, port: int, state: str) -> str:
    """The README's config, pointed at this test's OpenBao (token auth), emulator and port."""
    config = next(block for block in _fenced("toml") if "[[targets]]" in block)
    config = re.sub(r'address = "[^"]*"', f'address = "{vault}"', config, count=1)
    config = re.sub(r'method = "[^"]*"', 'method = "token"', config)
    config = re.sub(r'(?m)^role = "[^"]*"\n', "", config)
    config = re.sub(r'listen = "[^"]*"', f'listen = "127.0.0.1:{port}"', config)
    config = re.sub(r'state_path = "[^"]*"', f'state_path = "{state}"', config)
    config = re.sub(r'vault_path = "[^"]*"', f'vault_path = "{state}-consumers/web"', config)
    return re.sub(r"(?m)^(region = .*)$", rf'\1\nbase_url = "{intercom}"', config)


def _readme_confirm_call() -> tuple[str, dict[str, str], str]:
    """The README's `curl` confirmation: its URL, headers and body."""
    block = next(b for b in _fenced("sh") if b.lstrip().startswith("curl") and "confirm" in b)
    words = shlex.split(block.replace("\\\n", " "))
    url = next(w for w in words if "://" in w)
    headers = dict(
        words[i + 1].split(": ", 1) for i, w in enumerate(words) if w in {"-H", "--header"}
    )
    body = next(words[i + 1] for i, w in enumerate(words) if w in {"-d", "--data"})
    return url, headers, body


def _run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*ROTATOR, *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )


def test_the_readme_hook_call_confirms_a_rotation_of_a_daemon_run_from_the_readme_config(
    tmp_path, openbao, emulator, vault_settings
):
    """The README's config, with the variables it names set, runs a daemon, and the README's
    curl call (its scheme, path, header and body shape) confirms that daemon's rotation."""
    port = free_port()
    config = tmp_path / "rotator.toml"
    config.write_text(
        _readme_config(openbao.address, emulator.url, port, vault_settings.state_path)
    )
    known = {"INTERCOM_TOKEN": INTERCOM_EMULATOR_TOKEN, "ROTATOR_HOOK_TOKEN": HOOK_TOKEN}
    named = re.findall(r'(?m)^\w+_env = "(\w+)"', config.read_text())  # not commented out
    env = {
        **os.environ,
        **{name: known.get(name, f"readme-{name.lower()}-0123456789") for name in named},
        "ROTATOR_CONFIG": str(config),
        "VAULT_TOKEN": openbao.root_token,
    }
    assert set(known) <= set(named)
    checked = _run(env, "check-config")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert _run(env, "reconcile").returncode == 0
    assert _run(env, "rotate-now", "web").returncode == 0
    pending = json.loads(_run(env, "status", "--json").stdout)[0]["pending_secret_id"]
    url, headers, body = _readme_confirm_call()
    # Only the host (the Service's name in the README) and the id are this test's own.
    url = re.sub(r"//rotator:8080/", f"//127.0.0.1:{port}/", url)
    headers = {k: v.replace("$ROTATOR_HOOK_TOKEN", HOOK_TOKEN) for k, v in headers.items()}
    body = json.dumps({**json.loads(body), "secret_id": pending})
    with (
        (tmp_path / "daemon.log").open("w") as log,
        subprocess.Popen([*ROTATOR, "run"], env=env, stdout=log, stderr=log) as daemon,
    ):
        try:
            with httpx.Client(timeout=2) as http:
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline:  # waiting for a real server to start
                    assert daemon.poll() is None, (tmp_path / "daemon.log").read_text()
                    try:
                        if http.get(f"http://127.0.0.1:{port}/readyz").status_code == 200:
                            break
                    except httpx.TransportError:
                        http.get(f"{emulator.url}/__verify")  # a real request paces the wait
                answer = http.post(url, headers=headers, content=body)
        finally:
            daemon.terminate()
            daemon.wait(timeout=15)
    assert answer.status_code == 200, answer.text
    assert answer.json()["status"] == "confirmed"


def test_the_readme_demo_commands_run_from_a_fresh_checkout():
    """Every demo command the README shows goes through scripts/ (rotator is not on PATH until
    .venv is activated, which the README says how to do), with options `rotator demo` accepts."""
    section = README.split("## Try it", 1)[1].split("\n## ", 1)[0]
    commands = [c for c in re.findall(r"`([^`\n]*demo[^`\n]*)`", section) if " " in c]
    commands += [line.split("#")[0].strip() for line in _fenced("sh")[0].splitlines()]
    demos = [shlex.split(c) for c in commands if "demo" in c]
    assert demos
    for words in demos:
        assert words[0] == "./scripts/demo", words
        assert os.access(REPO / words[0], os.X_OK)
        build_parser().parse_args(["demo", *words[1:]])  # exits 2 on an option it lacks
    assert ". .venv/bin/activate" in README


@pytest.mark.parametrize("doc", sorted(DOCS))
def test_every_toml_example_of_the_docs_is_a_valid_configuration(doc):
    """Every ```toml block of the README and the operator guide validates as rotator's
    configuration (every problem would be reported at once, naming the block): a whole file as
    written, a fragment with only the keys it leaves out filled in; and the named-consumer
    examples among them show each kind of consumer: probed by URL, by DNS, and hook-only."""
    settings = _doc_settings(doc)
    assert settings
    consumers = [c for s in settings for t in s.targets for c in t.consumers]
    assert any(c.probe_urls for c in consumers), "no consumer probed by URL"
    assert any(c.probe_dns for c in consumers), "no consumer probed by DNS"
    assert any(not c.probed for c in consumers), "no hook-only consumer"
    assert any(t.confirmation == "consumers" for s in settings for t in s.targets)


def test_the_guides_headless_service_is_the_one_its_probe_dns_names():
    """The operator guide's headless Service (clusterIP None, a selector, a port) is the name
    and port its probe_dns example asks, so a reader who copies both gets a working pair."""
    services = [
        doc
        for block in _fenced("yaml", GUIDE)
        for doc in yaml.safe_load_all(block)
        if isinstance(doc, dict) and doc.get("kind") == "Service"
    ]
    headless = [s for s in services if s["spec"].get("clusterIP") == "None"]
    assert headless, "the guide shows no headless Service"
    probed = {
        c.probe_dns
        for s in _doc_settings("docs/operator-guide.md")
        for t in s.targets
        for c in t.consumers
    }
    for service in headless:
        assert service["spec"]["selector"]
        meta = service["metadata"]
        for port in service["spec"]["ports"]:
            name = f"{meta['name']}.{meta['namespace']}.svc.cluster.local:{port['port']}"
            assert name in probed, (name, probed)
