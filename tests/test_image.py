"""The container image, built from the Dockerfile as CI builds it (scripts/build-ci-image: the
same file on a local Debian base) and run as a pod would run it: as uid 10001, against a real
OpenBao and the emulator on loopback. `podman run` does not work on CI's machine (itself a
container: its OCI runtime may not set the limits a container gets); `buildah run --isolation
chroot` does, and shares the host's network, so the image's `rotator` reaches the servers the
fixtures start.

The build takes under two minutes from nothing (tools and base included), seconds cached; the
tests then take seconds each. As root with apt-get, the script installs what it needs; elsewhere
the module is skipped unless CI is set, where a missing tool fails it."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

import rotator
from rotator.demo.openbao import free_port
from rotator.emulator.server import INTERCOM_EMULATOR_TOKEN

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

REPO = Path(__file__).resolve().parent.parent
UID = "10001:10001"
CONFIG_IN_IMAGE = "/etc/rotator/rotator.toml"  # the image's ROTATOR_CONFIG
# A 256-bit base64url secret as Intercom issues them: nothing of this shape may be printed.
MATERIAL_SHAPE = re.compile(r"(?<![A-Za-z0-9_-])[A-Za-z0-9_-]{43}(?![A-Za-z0-9_-])")

CONFIG = """\
[vault]
address = "{vault}"
mount = "secret"
state_path = "{state}"
[vault.auth]
method = "token"
[server]
listen = "127.0.0.1:{port}"
hook_token_env = "ROTATOR_HOOK_TOKEN"
[[targets]]
name = "web"
base_url = "{intercom}"
token_env = "INTERCOM_TOKEN"
secret_name = "Production Web"
platforms = ["web"]
vault_path = "{path}"
schedule = "30d"
grace_period = "24h"
confirmation = "hook-or-grace"
"""


@pytest.fixture(scope="module")
def image() -> str:
    """The image's id, built by scripts/build-ci-image (which installs its tools as root)."""
    can_install = os.geteuid() == 0 and shutil.which("apt-get") is not None
    has_tools = all(shutil.which(tool) for tool in ("podman", "buildah", "mmdebstrap"))
    if not (has_tools or can_install or os.environ.get("CI")):
        pytest.skip("needs podman, buildah and mmdebstrap, or root with apt-get to install them")
    built = subprocess.run(
        [str(REPO / "scripts" / "build-ci-image")],
        capture_output=True,
        text=True,
        timeout=840,
        check=False,
    )
    assert built.returncode == 0, built.stderr[-6000:]
    return built.stdout.strip()


def buildah() -> str:
    """buildah's path: there once the image is built (scripts/build-ci-image installs it)."""
    path = shutil.which("buildah")
    assert path is not None, "buildah is not installed"
    return path


@pytest.fixture
def container(image: str) -> Iterator[str]:
    """A working container of the image (a fresh root filesystem), removed afterwards."""
    name = f"rotator-image-test-{uuid.uuid4().hex[:12]}"
    subprocess.run(
        [buildah(), "from", "--pull=never", "--name", name, image],
        capture_output=True,
        check=True,
        timeout=120,
    )
    yield name
    subprocess.run([buildah(), "rm", name], capture_output=True, check=False, timeout=120)


@pytest.fixture
def world(tmp_path, openbao, emulator, vault_settings):
    """The config file, mounted at the image's ROTATOR_CONFIG, and the variables it names."""
    port = free_port()
    config = tmp_path / "rotator.toml"
    consumers = vault_settings.state_path.replace("/state", "/web")
    config.write_text(
        CONFIG.format(
            vault=openbao.address,
            state=vault_settings.state_path,
            port=port,
            intercom=emulator.url,
            path=consumers,
        )
    )
    config.chmod(0o644)  # read by uid 10001
    env = {
        "VAULT_TOKEN": openbao.root_token,
        "INTERCOM_TOKEN": INTERCOM_EMULATOR_TOKEN,
        "ROTATOR_HOOK_TOKEN": "image-hook-token-0123456789",
        "ROTATOR_LOG_LEVEL": "info",
    }
    return config, env, port, consumers


def in_image(container: str, world, *args: str) -> list[str]:
    """The command line that runs the image's `rotator ARGS` as uid 10001 on the host's network."""
    config, env, _, _ = world
    command = [
        buildah(), "run", "--isolation", "chroot", "--user", UID, "--network", "host",
        "--volume", f"{config}:{CONFIG_IN_IMAGE}:ro",
    ]  # fmt: skip
    for name, value in env.items():
        command += ["--env", f"{name}={value}"]
    return [*command, container, "--", "rotator", *args]


def run(container: str, world, *args: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        in_image(container, world, *args), capture_output=True, text=True, timeout=120, check=False
    )
    output = result.stdout + result.stderr
    assert "Traceback" not in output
    assert not MATERIAL_SHAPE.search(output), "something shaped like secret material was printed"
    return result


def test_the_image_is_configured_to_run_rotator_as_uid_10001(image):
    """The image's own settings: uid 10001, `rotator run` by default, its config path, the
    health check, and the version label of the code it holds."""
    inspected = subprocess.run(
        [buildah(), "inspect", "--type", "image", image],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    config = json.loads(inspected.stdout)["Docker"]["config"]
    assert config["User"] == UID
    assert config["Entrypoint"] == ["rotator"]
    assert config["Cmd"] == ["run"]
    assert f"ROTATOR_CONFIG={CONFIG_IN_IMAGE}" in config["Env"]
    assert "/healthz" in " ".join(config["Healthcheck"]["Test"])
    assert config["Labels"]["org.opencontainers.image.version"] == rotator.__version__


def test_rotator_in_the_image_checks_its_config(container, world):
    """`rotator --version` and `check-config` run in the image, as uid 10001, on the mounted
    config, reaching OpenBao on loopback."""
    version = run(container, world, "--version")
    assert version.returncode == 0, version.stderr
    assert version.stdout.strip() == f"rotator {rotator.__version__}"
    checked = run(container, world, "check-config")
    assert checked.returncode == 0, checked.stderr
    assert "configuration OK" in checked.stdout
    assert "web:" in checked.stdout


def test_rotator_in_the_image_rotates_for_real(container, world, openbao, emulator):
    """A full rotation by the image's `rotator`: the first secret, then an emergency rotate-now;
    the consumers' Vault path holds the new secret's id, which Intercom (the emulator) lists as
    its only live secret, the old one deleted."""
    _, _, _, consumers = world

    def consumers_see() -> str:
        answer = openbao.admin().secrets.kv.v2.read_secret_version(
            path=consumers, mount_point="secret", raise_on_deleted_version=True
        )
        return str(answer["data"]["data"]["intercom_id"])

    first = run(container, world, "reconcile")
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith("web: idle")
    old = consumers_see()
    assert [s.id for s in emulator.store.live("default")] == [old]

    rotated = run(container, world, "rotate-now", "web", "--emergency", "--yes")
    assert rotated.returncode == 0, rotated.stderr
    new = consumers_see()
    assert new != old
    assert [s.id for s in emulator.store.live("default")] == [new]
    assert {s.id for s in emulator.store.all()} == {old, new}


def test_the_daemon_in_the_image_answers_healthz_and_stops_on_sigterm(container, world):
    """`rotator run` in the image serves GET /healthz on its listen address, and SIGTERM (what
    Kubernetes sends) stops it cleanly: exit 0, `daemon.stopped` logged."""
    _, _, port, _ = world
    url = f"http://127.0.0.1:{port}/healthz"
    with subprocess.Popen(
        in_image(container, world, "run"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as daemon:
        try:
            answer = _wait_for(url, daemon)
            assert answer.status_code == 200, answer.text
            # buildah answers a SIGTERM by killing what it runs: signal rotator itself, the
            # process at the end of buildah's chain (chroot isolation: no PID namespace).
            os.kill(_last_descendant(daemon.pid), signal.SIGTERM)
            assert daemon.wait(timeout=30) == 0
        finally:
            if daemon.poll() is None:
                daemon.kill()
        out, err = daemon.communicate()
    assert "daemon.stopped" in err
    assert "Traceback" not in out + err
    assert not MATERIAL_SHAPE.search(out + err)


def _last_descendant(pid: int) -> int:
    """Follow the chain of child processes (any thread's) down to the one with none."""
    while True:
        children = [
            int(child)
            for task in Path(f"/proc/{pid}/task").iterdir()
            for child in (task / "children").read_text().split()
        ]
        if not children:
            return pid
        pid = children[-1]


def _wait_for(url: str, process: subprocess.Popen[str]) -> httpx.Response:
    with httpx.Client(timeout=2) as http:
        for _ in range(600):
            if process.poll() is not None:
                _, err = process.communicate()
                raise AssertionError(f"the daemon exited {process.returncode}: {err[-3000:]}")
            try:
                return http.get(url)
            except httpx.TransportError:
                threading.Event().wait(0.05)  # waiting for a real server to start
    raise AssertionError("the daemon in the image did not come up")
