"""A one-shot command imports what its verb needs and nothing else (start-up time is a budget:
bench/RESULTS.md). Real ``rotator`` processes against OpenBao and the emulator; each reports the
modules it had imported when it exited. No timing here: ``scripts/bench`` measures."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rotator.cli import main
from rotator.emulator.server import INTERCOM_EMULATOR_TOKEN

# Runs the real CLI through its entry point, then writes to $MODULES_OUT as the process exits
# sys.modules and what the garbage collector did: for each collection once the entry point ran,
# whether the process was still starting (rotator.cli.process); its state at exit.
SPY = """\
import atexit, gc, json, os, sys
out = os.environ["MODULES_OUT"]
collections = []
def starting():
    return sys.modules["rotator.cli.process"]._starting.is_set()
began = False
def collected(phase, _):
    if phase == "start" and began:
        collections.append(starting())
gc.callbacks.append(collected)
def report():
    global began
    began = False  # the interpreter's own collections at exit are not the command's
    facts = {"modules": sorted(sys.modules), "collections": collections,
             "enabled": gc.isenabled(), "frozen": gc.get_freeze_count()}
    open(out, "w").write(json.dumps(facts))
atexit.register(report)
sys.argv = ["rotator", *sys.argv[1:]]
from rotator.cli.process import run
began = True
raise SystemExit(run())
"""

#: What only the daemon (hook, health, metrics, scheduler) or the emulator and demo need.
DAEMON_ONLY = {
    "prometheus_client",
    "waitress",
    "werkzeug",
    "apscheduler",
    "jwt",
    "rotator.daemon",
    "rotator.hook",
    "rotator.notify",
    "rotator.probe",
    "rotator.demo",
}
#: An HTTP client is made when Intercom is called, not before.
HTTP_CLIENT = {"httpcore", "h11", "anyio"}
#: What only calling Intercom needs: a pass that does not call it imports none of it.
INTERCOM_CALLS = {"httpx", "rotator.intercom.client", "rotator.intercom.sessions"}
#: What the configuration, the logs, Vault and Intercom bring: none of it for `--help`.
LIBRARIES = {"pydantic", "structlog", "hvac", "requests", "httpx", "tenacity"}

CONFIG = """\
[vault]
address = "{vault}"
state_path = "{state}"
[[targets]]
name = "web"
base_url = "{intercom}"
token_env = "INTERCOM_TOKEN"
secret_name = "Production Web"
vault_path = "{path}"
schedule = "30d"
grace_period = "24h"
"""


@pytest.fixture
def env(tmp_path, openbao, emulator, vault_settings):
    config = tmp_path / "rotator.toml"
    config.write_text(
        CONFIG.format(
            vault=openbao.address,
            state=vault_settings.state_path,
            intercom=emulator.url,
            path=vault_settings.state_path.replace("/state", "/web"),
        )
    )
    return {
        **os.environ,
        "VAULT_TOKEN": openbao.root_token,
        "INTERCOM_TOKEN": INTERCOM_EMULATOR_TOKEN,
        "ROTATOR_CONFIG": str(config),
        "ROTATOR_LOG_LEVEL": "warning",
        "MODULES_OUT": str(tmp_path / "modules.json"),
    }


def run(env, *args):
    """``rotator ARGS``: its result, and the top-level names of the modules it imported (with
    rotator's own by their first two parts)."""
    result, facts = run_spied(env, *args)
    modules = facts["modules"]
    names = {m.split(".")[0] for m in modules} | {".".join(m.split(".")[:2]) for m in modules}
    return result, names


def run_spied(env, *args):
    """``rotator ARGS``: its result, and what the spy saw (``SPY``)."""
    result = subprocess.run(
        [sys.executable, "-c", SPY, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return result, json.loads(Path(env["MODULES_OUT"]).read_text())


def test_reconcile_with_nothing_due_makes_no_http_client(env):
    """A reconcile with nothing due (the CronJob's usual run) reads Vault and neither imports
    the daemon's parts nor makes an HTTP client for Intercom, which it does not call."""
    first, _ = run(env, "reconcile")  # the first secret is created: Intercom is called
    assert first.returncode == 0, first.stderr
    result, imported = run(env, "reconcile")
    assert result.returncode == 0, result.stderr
    assert "web: idle: not due" in result.stdout
    assert {"hvac", "pydantic", "structlog", "rotator.reconciler"} <= imported  # it really ran
    assert not imported & DAEMON_ONLY
    assert not imported & (HTTP_CLIENT | INTERCOM_CALLS)
    assert "asyncio.base_events" not in imported


def test_no_pydantic_plugin_is_ever_loaded(env, tmp_path):
    """pydantic looks for plugins in every installed package's entry points when its first
    model is built, unless told not to: rotator uses none, and tells it before its first model.
    An installed package offering one (a real entry point on the path) is never loaded."""
    site = tmp_path / "site"
    info = site / "spyplugin-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: spyplugin\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[pydantic]\nspy = spyplugin:plugin\n")
    marker = tmp_path / "loaded"
    (site / "spyplugin.py").write_text(
        f"open({str(marker)!r}, 'w').write('loaded')\n"
        "class _Plugin:\n"
        "    def new_schema_validator(self, *args, **kwargs):\n"
        "        return None, None, None\n"
        "plugin = _Plugin()\n"
    )
    env = {**env, "PYTHONPATH": os.pathsep.join(filter(None, [str(site), env.get("PYTHONPATH")]))}
    result, imported = run(env, "check-config")
    assert result.returncode == 0, result.stderr
    assert "pydantic" in imported  # the configuration's models were built
    assert not marker.exists(), "pydantic loaded an installed plugin"
    # The spy itself works: a process that does not say "no plugins" loads it.
    probe = "import pydantic\nclass M(pydantic.BaseModel):\n    x: int = 0\n"
    clean = {k: v for k, v in env.items() if k != "PYDANTIC_DISABLE_PLUGINS"}
    subprocess.run([sys.executable, "-c", probe], env=clean, check=True, timeout=60)
    assert marker.exists()


def test_rotate_now_imports_none_of_the_daemon(env):
    """An emergency rotate-now calls Intercom and Vault, and imports none of the daemon's parts
    (metrics, hook server, scheduler, JWTs)."""
    assert run(env, "reconcile")[0].returncode == 0
    result, imported = run(env, "rotate-now", "web", "--emergency", "--yes")
    assert result.returncode == 0, result.stderr
    assert " complete: " in result.stdout
    assert {"hvac", "httpx", "httpcore"} <= imported  # it really called both
    assert not imported & DAEMON_ONLY
    assert "asyncio.base_events" not in imported  # structlog's asyncio was never loaded


@pytest.mark.parametrize("args", [["--help"], ["reconcile", "--help"], ["--version"]])
def test_help_and_version_load_no_library(env, args):
    """``--help`` and ``--version`` answer from the parser alone: no configuration model,
    logging, Vault or HTTP library is imported."""
    result, imported = run(env, *args)
    assert result.returncode == 0, result.stderr
    assert "rotator" in result.stdout
    assert not imported & (LIBRARIES | DAEMON_ONLY | HTTP_CLIENT)


def test_no_collection_while_starting_and_collections_while_working(env):
    """The entry point keeps the cyclic garbage collector off while a command imports and
    reads its configuration (it would walk a few hundred thousand objects that live until the
    exit, and find nothing), and on for the command's work: a rotation, like a 10,000-target
    reconcile or the daemon, makes cyclic garbage that must be collected. At exit what is left
    is frozen (no last walk of it all)."""
    assert run(env, "reconcile")[0].returncode == 0
    result, facts = run_spied(env, "rotate-now", "web", "--emergency", "--yes")
    assert result.returncode == 0, result.stderr
    assert " complete: " in result.stdout
    assert facts["collections"], "no collection at all: the collector was never turned back on"
    assert not any(facts["collections"]), "a collection ran while the command was starting"
    assert facts["enabled"]
    assert facts["frozen"] > 10_000  # the modules, classes and functions start-up made


@pytest.mark.parametrize("args", [["--version"], ["rotate-now"], ["status", "nosuch"]])
def test_the_collector_is_back_on_however_a_command_ends(env, args):
    """``--version``, a usage error and an unknown target end before any verb has its parts:
    the collector is on again when the process exits, whatever exit code it has."""
    result, facts = run_spied(env, *args)
    assert result.returncode in {0, 2}, result.stderr
    assert "Traceback" not in result.stderr
    assert facts["enabled"]
    assert not any(facts["collections"])


def test_main_in_process_leaves_the_collector_alone(capsys, log_output):
    """``main`` (what tests and embedders call) never touches the collector: only the entry
    point does, for a process of its own. (``log_output`` puts back the logging ``main``
    configures.)"""
    import gc

    frozen = gc.get_freeze_count()
    assert main(["completion", "bash"]) == 0
    assert "rotator" in capsys.readouterr().out
    assert gc.isenabled()
    assert gc.get_freeze_count() == frozen


#: Defers asyncio as the entry point does, then uses it every way code reaches a module.
DEFERRED_ASYNCIO = """\
import sys, threading
from rotator.cli.process import _defer_asyncio
_defer_asyncio()
import structlog  # imports asyncio, as rotator's logs do
assert "asyncio.base_events" not in sys.modules, "structlog loaded asyncio"
import asyncio
from asyncio import iscoroutinefunction  # the daemon's scheduler, at its import
import asyncio.events  # a submodule
async def answer():
    return 42
results = []
threads = [threading.Thread(target=lambda: results.append(asyncio.run(answer()))) for _ in range(4)]
for t in threads:
    t.start()
for t in threads:
    t.join()
assert results == [42] * 4, results
assert iscoroutinefunction(answer)
assert type(sys.modules["asyncio"]).__name__ == "module"  # the real one took its place
assert structlog.stdlib.asyncio.get_event_loop_policy() is not None  # bound before: forwards
real = sys.modules["asyncio"]
_defer_asyncio()  # loaded already: nothing to defer
assert sys.modules["asyncio"] is real
print("ok")
"""


def says_ok(code: str) -> None:
    """Run ``code`` in a Python of its own; it ends by printing ``ok`` (its asserts passed)."""
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_deferred_asyncio_loads_on_first_use():
    """The entry point binds asyncio to a stand-in (structlog imports it for methods rotator
    never calls): nothing loads it until something uses it, and then every way of using it
    works, from four threads at once, and the real module replaces the stand-in."""
    says_ok(DEFERRED_ASYNCIO)
