"""Notifications on transitions, delivered to a real local HTTP receiver.

Rotations run on real OpenBao and the emulator (the ``world`` of ``test_rotation``); the
receiver is werkzeug's server in a thread, recording what arrives and answering as told.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
from test_commands import run
from test_commands import setup as setup  # noqa: PLC0414 - the fixture, re-exported here
from test_rotation import HMAC_KEY, bootstrap
from test_rotation import world as world  # noqa: PLC0414 - the fixture, re-exported here
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from rotator.config import ConfigError, NotifySettings, parse_settings
from rotator.core.observation import RotateNow
from rotator.demo.openbao import free_port
from rotator.emulator.server import INTERCOM_EMULATOR_TOKEN
from rotator.notify import Notification, Notifier
from rotator.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign

SLACK_PATH = "/services/T000/B000/slack-webhook-path-0123456789"


@dataclass
class Arrival:
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    """A webhook receiver: records requests, answers ``status``, holds them while ``hold``."""

    url: str = ""
    status: int = 200
    hold: threading.Event | None = None
    arrivals: list[Arrival] = field(default_factory=list)

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        self.arrivals.append(Arrival(dict(request.headers), request.get_data()))
        if self.hold is not None:
            self.hold.wait(30)
        return Response("ok", status=self.status)(environ, start_response)

    def events(self) -> list[str]:
        return [a.json().get("event") for a in self.arrivals]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    app = Receiver()
    server = make_server("127.0.0.1", 0, app, threaded=True)
    app.url = f"http://127.0.0.1:{server.port}/hooks/rotator"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    yield app
    if app.hold is not None:
        app.hold.set()
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def notifier(world, *webhooks: dict[str, Any], **options: Any) -> Notifier:
    """A Notifier on the world's clock; retry waits are recorded by ``sleep``, not waited."""
    sleep = options.pop("sleep", lambda _s: None)
    queue_size = options.pop("queue_size", 256)
    settings = NotifySettings.model_validate({"webhooks": list(webhooks), **options})
    return Notifier(
        settings,
        environ={**world.environ, "NOTIFY_HMAC": HMAC_KEY},
        clock=world.clock,
        sleep=sleep,
        queue_size=queue_size,
    )


def rotate_and_retire(world, told: Notifier) -> tuple[str, str]:
    """bootstrap, rotate-now (stored), two days later (retired); returns (old, new)."""
    old = bootstrap(world)
    reconciler = world.reconciler(listeners=[told])
    assert reconciler.reconcile_target("web", RotateNow()).phase == "awaiting_rollout"
    new = world.consumer()["intercom_id"]
    world.clock.advance(days=2)
    assert reconciler.reconcile_all()[0].phase == "idle"
    return old, new


def log_events(log_output, name: str) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in log_output.getvalue().splitlines()]
    return [e for e in lines if e.get("event") == name]


def test_stored_retired_and_blocked_arrive_signed(world, receiver):
    """Each event arrives once, as JSON with ids and reason, signed as the confirm hook checks."""
    told = notifier(world, {"url": receiver.url, "hmac_key_env": "NOTIFY_HMAC"})
    old, new = rotate_and_retire(world, told)
    world.emulator.revoke_token(INTERCOM_EMULATOR_TOKEN)
    world.clock.advance(days=31)
    assert world.reconciler(listeners=[told]).reconcile_all()[0].phase == "blocked"
    assert told.close(timeout=10)
    assert receiver.events() == ["stored", "retired", "blocked"]
    stored, retired, blocked = (a.json() for a in receiver.arrivals)
    rotation_id = world.record().history[-1].rotation_id
    assert stored["target"] == "web"
    assert stored["rotation_id"] == rotation_id
    assert stored["phase"] == "awaiting_rollout"
    assert (stored["new_secret_id"], stored["old_secret_ids"]) == (new, [old])
    assert stored["deadline"] is not None
    assert (retired["new_secret_id"], retired["old_secret_ids"]) == (new, [old])
    assert (retired["phase"], retired["rotation_id"]) == ("idle", rotation_id)
    assert blocked["phase"] == "blocked"
    assert "rejected the access token" in blocked["reason"]
    for arrival in receiver.arrivals:
        timestamp = int(arrival.headers[TIMESTAMP_HEADER])
        expected = sign(HMAC_KEY, timestamp, arrival.body)
        assert hmac.compare_digest(arrival.headers[SIGNATURE_HEADER], expected)
        assert arrival.headers["X-Rotator-Event"] == arrival.json()["event"]
        assert arrival.headers["Content-Type"] == "application/json"
        for secret in world.emulator.store.all():
            assert secret.secret.encode() not in arrival.body


def test_slack_format_posts_text_to_a_secret_url(world, receiver, log_output):
    """format = "slack" sends {"text": ...}; a URL from a variable never reaches the log."""
    slack_url = receiver.url.replace("/hooks/rotator", SLACK_PATH)
    world.environ["SLACK_WEBHOOK_URL"] = slack_url
    told = notifier(
        world, {"url_env": "SLACK_WEBHOOK_URL", "format": "slack", "events": ["stored"]}
    )
    _, new = rotate_and_retire(world, told)
    assert told.close(timeout=10)
    [arrival] = receiver.arrivals
    body = arrival.json()
    assert set(body) == {"text"}
    assert "web" in body["text"]
    assert new in body["text"]
    assert "roll it out now" in body["text"]
    assert SIGNATURE_HEADER not in arrival.headers
    [sent] = log_events(log_output, "notify.sent")
    assert sent["webhook"] == "$SLACK_WEBHOOK_URL"
    assert SLACK_PATH not in log_output.getvalue()


def test_a_hanging_receiver_does_not_hold_up_the_rotation(world, receiver):
    """Deliveries run beside the rotation: it completes while the receiver still holds them."""
    receiver.hold = threading.Event()
    told = notifier(world, {"url": receiver.url})
    rotate_and_retire(world, told)
    assert world.record().phase.value == "idle"
    assert not told.flush(timeout=0.05), "deliveries were still in flight"
    receiver.hold.set()
    assert told.close(timeout=10)
    assert receiver.events() == ["stored", "retired"]


def test_a_failing_receiver_is_retried_then_logged(world, receiver, log_output):
    """A receiver answering 500 gets every attempt, then notify.failed is logged; the rotation
    completes all the same."""
    receiver.status = 500
    waits: list[float] = []
    world.environ["HOOK_URL"] = receiver.url
    told = notifier(
        world, {"url_env": "HOOK_URL", "events": ["retired"]}, attempts=3, sleep=waits.append
    )
    rotate_and_retire(world, told)
    assert world.record().phase.value == "idle"
    assert told.close(timeout=10)
    assert receiver.events() == ["retired"] * 3
    assert len(waits) == 2
    [failed] = log_events(log_output, "notify.failed")
    assert failed["attempts"] == 3
    assert failed["notify_event"] == "retired"
    assert failed["webhook"] == "$HOOK_URL"
    assert "500" in failed["error"]
    assert receiver.url not in log_output.getvalue()


def test_a_receiver_that_is_down_costs_nothing(world, log_output):
    """Nothing listening at the URL: the rotation completes and each event is logged failed."""
    down = f"http://127.0.0.1:{free_port()}/hook"
    told = notifier(world, {"url": down})
    rotate_and_retire(world, told)
    assert world.record().phase.value == "idle"
    assert told.close(timeout=10)
    failed = log_events(log_output, "notify.failed")
    assert [f["notify_event"] for f in failed] == ["stored", "retired"]
    assert all(f["attempts"] == 3 and f["webhook"] == down for f in failed)


def test_a_full_queue_drops_and_logs_instead_of_waiting(world, receiver, log_output):
    """With the worker stuck and the queue full, further notifications are dropped and logged."""
    receiver.hold = threading.Event()
    told = notifier(world, {"url": receiver.url}, {"url": receiver.url}, queue_size=1)
    bootstrap(world)
    report = world.reconciler(listeners=[told]).reconcile_target("web", RotateNow(emergency=True))
    assert report.phase == "idle"
    dropped = log_events(log_output, "notify.dropped")
    assert len(dropped) >= 2
    receiver.hold.set()
    assert told.close(timeout=10)
    assert len(receiver.arrivals) + len(dropped) == 4


def test_the_reconcile_cli_sends_and_flushes_before_exiting(setup, receiver):
    """`rotator reconcile` with [notify] delivers (signed) before the process exits."""
    config, env, _ = setup
    config.write_text(
        config.read_text()
        + f'[notify]\nwebhooks = [{{url = "{receiver.url}", hmac_key_env = "NOTIFY_HMAC"}}]\n'
    )
    env = {**env, "NOTIFY_HMAC": HMAC_KEY}
    result = run(env, "reconcile")
    assert result.returncode == 0, result.stderr
    assert receiver.events() == ["stored", "retired"]
    for arrival in receiver.arrivals:
        expected = sign(HMAC_KEY, int(arrival.headers[TIMESTAMP_HEADER]), arrival.body)
        assert arrival.headers[SIGNATURE_HEADER] == expected
    assert INTERCOM_EMULATOR_TOKEN not in result.stdout + result.stderr


def test_check_config_names_missing_notify_variables(setup):
    """check-config reports a webhook variable that is not set, with its key."""
    config, env, _ = setup
    config.write_text(
        config.read_text() + '[notify]\nwebhooks = [{url_env = "SLACK_URL", format = "slack"}]\n'
    )
    result = run(env, "check-config")
    assert result.returncode == 2
    assert "notify.webhooks[0].url_env: $SLACK_URL is not set" in result.stderr


def test_notify_config_errors_are_reported_at_once_with_their_keys():
    """Every mistake in [notify] is reported together, each with its TOML key."""
    raw = {
        "vault": {"address": "http://127.0.0.1:8200"},
        "targets": [
            {
                "name": "web",
                "token_env": "T",
                "secret_name": "Web",
                "vault_path": "intercom/web",
            }
        ],
        "notify": {
            "attempts": 0,
            "retries": 2,
            "webhooks": [
                {"url": "ftp://example.com/x", "format": "xml"},
                {"url": "https://example.com/x", "url_env": "U", "events": ["deleted"]},
                {"hmac_key_env": "K", "hmac_key_vault": "x#key"},
                {"url": "https://example.com/x", "events": []},
            ],
        },
    }
    with pytest.raises(ConfigError) as caught:
        parse_settings(raw)
    problems = "\n".join(caught.value.problems)
    for expected in (
        "notify.attempts:",
        "notify.retries: unknown key",
        "notify.webhooks[0].url: must be an http(s) URL",
        "notify.webhooks[0].format:",
        "notify.webhooks[1].events[0]:",
        "notify.webhooks[2]: give exactly one of url or url_env",
        "notify.webhooks[3].events: name at least one of stored, retired, blocked",
    ):
        assert expected in problems, (expected, problems)
    settings = parse_settings(
        {**raw, "notify": {"webhooks": [{"url_env": "U", "hmac_key_vault": "keys/notify#k"}]}}
    )
    [hook] = settings.notify.webhooks
    assert hook.events == ("stored", "retired", "blocked", "stalled")
    assert hook.format == "json"


def test_each_retry_is_signed_afresh(world, receiver):
    """A retry after the receiver's own 5xx carries a new timestamp and signature, so a receiver
    that refuses replays (as rotator's hook does) accepts it; each signature is valid."""
    receiver.status = 500
    world.environ["HOOK_URL"] = receiver.url
    told = notifier(
        world,
        {"url_env": "HOOK_URL", "events": ["retired"], "hmac_key_env": "NOTIFY_HMAC"},
        attempts=3,
        sleep=lambda seconds: world.clock.advance(seconds=max(1.0, seconds)),
    )
    rotate_and_retire(world, told)
    assert told.close(timeout=10)
    stamps = [a.headers["X-Rotator-Timestamp"] for a in receiver.arrivals]
    signatures = [a.headers["X-Rotator-Signature"] for a in receiver.arrivals]
    assert len(set(stamps)) == len(set(signatures)) == 3
    for arrival in receiver.arrivals:
        timestamp = arrival.headers["X-Rotator-Timestamp"]
        expected = hmac.new(
            HMAC_KEY.encode(), f"{timestamp}.".encode() + arrival.body, hashlib.sha256
        ).hexdigest()
        assert arrival.headers["X-Rotator-Signature"] == f"sha256={expected}"


def test_chat_text_reads_well_with_no_old_secret_and_with_several():
    """A first rotation says there is no old secret to retire (not "Old secret(s) none stay
    live"); one old secret "stays", two "stay"."""
    at = datetime(2026, 11, 30, tzinfo=UTC)

    def text(event: str, old: tuple[str, ...]) -> str:
        return Notification(event, "web", "r1", "x", "101", old, "why", at).text()  # type: ignore[arg-type]

    assert text("stored", ()).endswith("roll it out now. There is no old secret to retire.")
    assert "The old secret 100 stays live." in text("stored", ("100",))
    assert "The old secrets 98, 99 stay live." in text("stored", ("98", "99"))
    assert text("retired", ()).endswith("101 is current; there was no old secret to retire.")
    assert text("retired", ("100",)).endswith("101 is current; retired 100.")
