"""No secret material in logs, exceptions or reprs: the redaction tools, and a whole session of
client and emulator work whose captured log output is scanned for every secret it saw."""

from __future__ import annotations

import copy
import json
import logging

import httpx
import pytest

from rotator.errors import transport_cause
from rotator.intercom import CreateOutcomeUnknown, IntercomAuthError, Platforms
from rotator.logs import get_logger, redact
from rotator.redaction import REDACTED, SecretValue, redact_text, register, scrub

WEB = Platforms(web=True)


def test_known_values_are_redacted_wherever_they_appear():
    """A registered secret is removed alone, glued to other text, or inside JSON."""
    value = "Zx9Qm2VtR7yKp4LcN8wA1sD6fG3hJ5kB0nM-_uE"
    register(value)
    for text in (value, f"key={value};", f"prefix{value}suffix", json.dumps({"v": value})):
        assert value not in redact_text(text)
        assert REDACTED in redact_text(text)


def test_values_with_unusual_characters_are_redacted_too():
    """A secret containing punctuation (an Intercom token: base64 with '=' and ':') is found."""
    value = "dG9rOmFiYzEyMzQ1Njc4OTA=:extra/+"
    register(value)
    assert value not in redact_text(f"token was {value} here")


def test_patterns_are_redacted_without_registration():
    """Bearer tokens and JSON secret members are removed even if never registered."""
    text = 'Authorization: Bearer abc.def.ghi {"secret": "unregistered-material", "name": "ok"}'
    cleaned = redact_text(text)
    assert "abc.def.ghi" not in cleaned
    assert "unregistered-material" not in cleaned
    assert '"name": "ok"' in cleaned


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("http://ops:pa55@host:9/x", "http://***@host:9/x"),
        ("at 'https://u:p@ss@h/a' and mail a@b", "at 'https://***@h/a' and mail a@b"),
        ("https://api.intercom.io/x@y", "https://api.intercom.io/x@y"),
    ],
)
def test_the_user_and_password_of_a_url_are_redacted(text, shown):
    """A URL's user and password (an unencoded `@` in it too) become `***`; an `@` in a path
    or elsewhere in the text stays."""
    assert redact_text(text) == shown


def test_a_request_our_side_could_not_form_is_not_called_a_broken_connection():
    """httpx's LocalProtocolError (an illegal header value) is not "the connection broke off":
    nothing was sent, and the network is not to blame."""
    assert transport_cause(httpx.LocalProtocolError("Illegal header value b'x\\n'")) == (
        "the request could not be formed"
    )
    assert transport_cause(httpx.RemoteProtocolError("peer closed")) == "the connection broke off"


def test_short_values_are_not_registered():
    """Registering a tiny value would shred every log line; it is ignored."""
    register("abc")
    assert redact_text("abcabc abc") == "abcabc abc"


def test_scrub_truncates_after_redacting():
    """scrub() cuts long text and says how much was cut."""
    assert scrub("x" * 50, limit=10) == "xxxxxxxxxx... [40 more characters]"


def test_secret_value_never_shows_itself():
    """repr, str, format, copy and comparison keep the value hidden; reveal() returns it."""
    secret = SecretValue("hidden-material-0123456789")
    for text in (repr(secret), str(secret), f"{secret}", f"{secret!r:>40}", repr([secret])):
        assert "hidden-material" not in text
    assert secret.reveal() == "hidden-material-0123456789"
    assert copy.deepcopy(secret) == secret
    assert secret != SecretValue("other-material-0123456789")
    assert secret.fingerprint().startswith("sha256:")
    assert "hidden" not in secret.fingerprint()
    with pytest.raises(ValueError, match="non-empty string"):
        SecretValue("")


def test_redact_processor_masks_sensitive_keys_and_nested_values():
    """By key (secret, token, ...) and by value, recursively, SecretValue objects included."""
    value = "nested-secret-value-0123456789"
    register(value)
    event = redact(
        None,
        "info",
        {
            "event": "x",
            "token": "whatever",
            "material": SecretValue("another-secret-0123456789"),
            "context": {"password": "p", "list": [value, 1, None]},
            "intercom_id": "102",
        },
    )
    assert event["token"] == REDACTED
    assert event["material"] == REDACTED
    assert event["context"]["password"] == REDACTED
    assert event["context"]["list"] == [REDACTED, 1, None]
    assert event["intercom_id"] == "102"


def test_a_session_of_work_logs_no_secret(log_output, emulator, make_client):
    """Creates, lists, deletes, lost answers, auth failures, retries and a crash with secrets in
    its local variables: the captured log holds none of the materials or tokens involved."""
    log = get_logger()
    client = make_client()
    created = [client.create_secret(f"web {n}", WEB) for n in range(3)]
    log.info("test.created", secrets=[c.secret for c in created], ids=[c.info.id for c in created])
    client.list_secrets()
    client.delete_secret(created[0].info.id)
    emulator.set_faults("post_drop=1")
    with pytest.raises(CreateOutcomeUnknown):
        client.create_secret("lost", WEB)
    emulator.set_faults("5xx=1:503")
    with pytest.raises(Exception, match="503"):
        client.list_secrets()
    emulator.set_faults("")
    wrong_token = "wrong-token-abcdef0123456789"
    with pytest.raises(IntercomAuthError):
        make_client(wrong_token).list_secrets()

    def crash(material: str) -> None:
        local_copy = material  # a secret in a local variable, where rich tracebacks look
        raise RuntimeError(f"boom while handling {len(local_copy)} characters")

    try:
        crash(created[1].secret.reveal())
    except RuntimeError:
        log.exception("test.crashed")
    logging.getLogger("third.party").warning("library says %s", created[2].secret.reveal())

    output = log_output.getvalue()
    materials = [s.secret for s in emulator.store.all()]
    assert len(materials) == 4  # three created, one lost to post_drop
    assert "test.crashed" in output
    assert "boom while handling" in output
    assert "intercom.retry" in output
    assert "library says" in output
    for secret in [*materials, wrong_token, "intercom-emulator-test-token"]:
        assert secret not in output
    for line in output.splitlines():
        json.loads(line)  # JSON off a TTY: one object per line
