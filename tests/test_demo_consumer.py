"""The reference consumer (`python -m rotator.demo.consumer`) as a real process against a real
OpenBao and the emulator: what its probe answers, when it switches, what each --control mode
does, that its signatures verify both ways, and that it stops cleanly without showing material.

Time is the consumer's own: short real reload delays, and every wait on it is bounded."""

from __future__ import annotations

import json
import signal
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from rotator.demo.consumer_process import ConsumerProcess, ConsumerStartError
from rotator.signing import probe_fingerprint

HTTP = httpx.Client(timeout=5)
WITHIN = 10.0  # seconds any awaited change of a consumer may take on a loaded machine


@pytest.fixture(scope="module", autouse=True)
def _close_http() -> Iterator[None]:
    yield
    HTTP.close()


def eventually(check: Callable[[], Any], within: float = WITHIN) -> Any:
    """``check()``'s first truthy result, asked of a real process until ``within`` runs out."""
    end = time.monotonic() + within
    while not (result := check()):
        assert time.monotonic() < end, f"still not true after {within} s"
        time.sleep(0.02)  # waiting on a real process: the one kind of wait allowed
    return result


class World:
    """A consumers' path in OpenBao, the emulator's secrets, and consumers reading them."""

    def __init__(self, openbao: Any, emulator: Any) -> None:
        self.openbao = openbao
        self.emulator = emulator
        self.path = f"consumer-test/{uuid.uuid4().hex}/web"
        self.materials: list[str] = []
        self.started: list[ConsumerProcess] = []

    def new_secret(self) -> Any:
        created = self.emulator.store.create("default", "s", web=True, ios=False, android=False)
        self.materials.append(created.secret)
        return created

    def publish(self, secret: Any) -> None:
        """Write ``secret`` to the path as rotator does (the fields a consumer reads)."""
        self.write({"secret": secret.secret, "intercom_id": secret.id, "rotation_id": "r"})

    def write(self, data: dict[str, Any]) -> None:
        self.openbao.admin().secrets.kv.v2.create_or_update_secret(
            path=self.path, secret=data, mount_point="secret"
        )

    def consumer(self, reload_delay: float = 0.2, **options: Any) -> ConsumerProcess:
        options.setdefault("listen", "127.0.0.2:0")
        options.setdefault("control", True)
        process = ConsumerProcess(
            vault_addr=self.openbao.address,
            vault_token=self.openbao.root_token,
            path=self.path,
            emulator_url=self.emulator.url,
            reload_delay=reload_delay,
            poll=0.05,
            **options,
        )
        self.started.append(process)
        return process.start()


@pytest.fixture
def world(openbao, intercom_emulator) -> Iterator[World]:
    built = World(openbao, intercom_emulator)
    yield built
    for process in built.started:
        process.stop()


def probe(consumer: ConsumerProcess, timeout: float = 5.0) -> httpx.Response:
    return HTTP.get(consumer.probe_url, timeout=timeout)


def probed_id(consumer: ConsumerProcess) -> str | None:
    answer = probe(consumer)
    return answer.json()["intercom_id"] if answer.status_code == 200 else None


def test_the_probe_answers_the_paths_id_and_its_fingerprint(world):
    """On the address it was told (127.0.0.2), the probe names the path's secret by id with the
    protocol's fingerprint of its material, and nothing else."""
    secret = world.new_secret()
    world.publish(secret)
    consumer = world.consumer()
    assert consumer.address.startswith("127.0.0.2:")
    eventually(lambda: probed_id(consumer))
    answer = probe(consumer)
    assert answer.status_code == 200
    assert answer.headers["Content-Type"] == "application/json"
    assert answer.json() == {
        "intercom_id": secret.id,
        "fingerprint": probe_fingerprint(secret.secret),
    }


def test_before_the_path_holds_a_secret_the_probe_answers_503(world):
    """Nothing at the path yet: 503 (not switched); once a secret appears, it is taken at once."""
    consumer = world.consumer(reload_delay=30)
    assert probe(consumer).status_code == 503
    secret = world.new_secret()
    world.publish(secret)
    assert eventually(lambda: probed_id(consumer)) == secret.id


def test_it_switches_a_reload_delay_after_the_path_changes(world):
    """A new secret on the path is signed with and answered no sooner than the reload delay
    after it was written, and soon after that."""
    first, second = world.new_secret(), world.new_secret()
    world.publish(first)
    consumer = world.consumer(reload_delay=1.0)
    eventually(lambda: probed_id(consumer) == first.id)
    written = time.monotonic()
    world.publish(second)
    assert probed_id(consumer) == first.id
    eventually(lambda: probed_id(consumer) == second.id)
    waited = time.monotonic() - written
    assert 1.0 <= waited < 1.0 + WITHIN
    assert consumer.state()["holds"] == second.id
    assert f"consumer: switched {first.id} -> {second.id}\n" in consumer.output


def test_control_modes_garbage_down_slow_and_back(world):
    """garbage answers 200 with a body that is not JSON, down answers 503, slow does not answer
    within a prober's timeout; ok answers at once again. The control says the mode it is in."""
    secret = world.new_secret()
    world.publish(secret)
    consumer = world.consumer()
    eventually(lambda: probed_id(consumer))
    assert consumer.control(mode="garbage")["mode"] == "garbage"
    answer = probe(consumer)
    assert answer.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        json.loads(answer.text)
    consumer.control(mode="down")
    assert probe(consumer).status_code == 503
    consumer.control(mode="slow")
    with pytest.raises(httpx.ReadTimeout):
        probe(consumer, timeout=0.5)
    now = consumer.control(mode="ok")
    assert (now["holds"], now["mode"], now["reload"]) == (secret.id, "ok", True)
    assert probed_id(consumer) == secret.id


def test_control_old_keeps_answering_the_secret_held_before_the_switch(world):
    """In mode old the probe names the previous secret, with that secret's fingerprint, while
    the consumer really signs with the new one (what GET /__control says)."""
    first, second = world.new_secret(), world.new_secret()
    world.publish(first)
    consumer = world.consumer()
    eventually(lambda: probed_id(consumer) == first.id)
    world.publish(second)
    eventually(lambda: probed_id(consumer) == second.id)
    consumer.control(mode="old")
    assert probe(consumer).json() == {
        "intercom_id": first.id,
        "fingerprint": probe_fingerprint(first.secret),
    }
    assert consumer.state()["holds"] == second.id


def test_control_reload_false_stops_switching_until_turned_back_on(world):
    """With reload off, a new secret on the path is not taken however long it waits (bounded
    here by ten reload delays); turned back on, it is taken."""
    first, second = world.new_secret(), world.new_secret()
    world.publish(first)
    consumer = world.consumer(reload_delay=0.1)
    eventually(lambda: probed_id(consumer) == first.id)
    assert consumer.control(reload=False)["reload"] is False
    world.publish(second)
    end = time.monotonic() + 1.0
    while time.monotonic() < end:
        assert consumer.state()["holds"] == first.id
        assert probed_id(consumer) == first.id
        time.sleep(0.05)  # watching a real process for a bounded time
    consumer.control(reload=True)
    eventually(lambda: probed_id(consumer) == second.id)


def test_bad_control_requests_are_refused_and_change_nothing(world):
    """An unknown mode, a non-boolean reload, an unknown key or a body that is not JSON get a
    400 saying what to send; the mode stays as it was."""
    consumer = world.consumer()
    for body in [{"mode": "sideways"}, {"reload": "yes"}, {"speed": 1}, {}, [1]]:
        answer = HTTP.post(consumer.url + "/__control", json=body)
        assert answer.status_code == 400
        assert '"mode"' in answer.json()["error"]
    answer = HTTP.post(consumer.url + "/__control", content=b"{not json")
    assert answer.status_code == 400
    assert consumer.state()["mode"] == "ok"


def test_without_control_there_is_no_control_endpoint(world):
    """Without --control (the demo's consumers), /__control is a 404 both ways: nobody can make
    it misbehave or read its counters."""
    consumer = world.consumer(control=False)
    assert HTTP.get(consumer.url + "/__control").status_code == 404
    assert HTTP.post(consumer.url + "/__control", json={"mode": "down"}).status_code == 404
    assert probe(consumer).status_code == 503


def test_its_user_hashes_and_jwts_verify_at_the_emulator(world):
    """Both signing methods are checked by the emulator and counted ok; once the secret it holds
    is deleted at Intercom, both are counted failed: the counts are real verdicts."""
    secret = world.new_secret()
    world.publish(secret)
    consumer = world.consumer()

    def counted(outcome: str) -> bool:
        checks = consumer.state()["checks"]
        return all(checks[method][outcome] >= 3 for method in ("user_hash", "jwt"))

    eventually(lambda: counted("ok"))
    checks = consumer.state()["checks"]
    assert all(checks[m]["failed"] == checks[m]["errors"] == 0 for m in ("user_hash", "jwt"))
    world.emulator.store.delete("default", secret.id)
    eventually(lambda: counted("failed"))
    assert f"consumer: jwt signed with secret {secret.id} REJECTED\n" in consumer.output


def test_sigterm_exits_0_even_mid_answer_and_no_material_is_shown(world):
    """SIGTERM while a slow probe is pending ends the process promptly with status 0; nothing it
    printed, served or counted contains secret material or the Vault token."""
    first, second = world.new_secret(), world.new_secret()
    world.publish(first)
    consumer = world.consumer()
    eventually(lambda: probed_id(consumer) == first.id)
    world.publish(second)
    eventually(lambda: probed_id(consumer) == second.id)
    served = probe(consumer).text + json.dumps(consumer.state())
    consumer.control(mode="slow")
    with pytest.raises(httpx.ReadTimeout):
        probe(consumer, timeout=0.3)
    started = time.monotonic()
    assert consumer.stop() == 0
    assert time.monotonic() - started < 5
    said = "".join(consumer.output)
    assert said.startswith("listening 127.0.0.2:")
    assert f"switched {first.id} -> {second.id}" in said
    for material in [*world.materials, world.openbao.root_token]:
        assert material not in said
        assert material not in served


def test_material_in_the_id_field_is_not_taken_nor_shown(world):
    """A path whose intercom_id holds something as long as material (a hand-written mistake) is
    not loaded: the probe stays 503 and the consumer says why without echoing the value."""
    secret = world.new_secret()
    world.write({"secret": secret.secret, "intercom_id": secret.secret})
    consumer = world.consumer()
    eventually(lambda: any("does not hold" in line for line in consumer.output))
    assert probe(consumer).status_code == 503
    assert consumer.stop() == 0
    assert secret.secret not in "".join(consumer.output)


def test_a_consumer_that_cannot_listen_says_why(world):
    """An address it cannot bind is an error message and a non-zero exit, not a traceback."""
    taken = world.consumer()
    with pytest.raises(ConsumerStartError) as caught:
        world.consumer(listen=taken.address)
    assert f"cannot listen on {taken.address}" in str(caught.value)
    assert "Traceback" not in str(caught.value)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_stopping_signals_exit_0(world, signum):
    """SIGTERM (a pod's stop) and SIGINT both end it with status 0."""
    consumer = world.consumer()
    assert consumer.pid is not None
    consumer._process.send_signal(signum)
    assert consumer._process.wait(timeout=WITHIN) == 0
