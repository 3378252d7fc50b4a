"""The emulator's world: workspaces, their secrets, the tokens that reach them.

Like Intercom, it generates each secret's material server-side (256 random bits, base64url) and
hands it out once, in the create answer; listing shows metadata only. Deleting is a soft delete:
the secret vanishes from the list and stops verifying, but the store remembers it (and who
deleted it, when) so tests can audit what happened. A live secret verifies a ``user_hash`` and a
Messenger JWT (HS256, keyed by the same material) alike. With a state file every change is written
atomically before the answer goes out, so a restarted emulator carries on where it stopped.

The file holds secret material in clear: it is the emulator's own database (Intercom's side), a
test fixture, created with mode 0600. Never point it at anything that matters.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import jwt

READ_SCOPE = "read_secure_mode_secret"
WRITE_SCOPE = "write_secure_mode_secret"
SCOPE_ALIASES = {
    "read": READ_SCOPE,
    "write": WRITE_SCOPE,
    READ_SCOPE: READ_SCOPE,
    WRITE_SCOPE: WRITE_SCOPE,
}
DEFAULT_WORKSPACE = "default"
_STATE_VERSION = 1


@dataclass(frozen=True, slots=True)
class Token:
    """An access token the emulator accepts, its scopes and its workspace."""

    value: str
    scopes: frozenset[str]
    workspace: str = DEFAULT_WORKSPACE
    #: The app whose rate limit the token's calls count against (``rotator.emulator.limits``):
    #: by default its own (a private app's token); one public app's tokens name the same app.
    app: str | None = None

    def __repr__(self) -> str:
        # The emulator's tokens are test credentials, but they still stay out of reprs.
        return (
            f"Token(scopes={sorted(self.scopes)}, workspace={self.workspace!r}, app={self.app!r})"
        )

    @property
    def rate_key(self) -> str:
        """What the rate limit counts this token's calls under."""
        return f"app:{self.app}" if self.app is not None else f"token:{self.value}"

    @classmethod
    def parse(cls, spec: str) -> Token:
        """``TOKEN:read,write``, ``TOKEN:read:WORKSPACE`` or ``TOKEN:read:WORKSPACE:APP``;
        scopes may be full scope names."""
        value, sep, rest = spec.partition(":")
        if not value or not sep:
            raise ValueError(
                "a token is written TOKEN:SCOPES[:WORKSPACE[:APP]], e.g. my-token:read,write "
                "(SCOPES may be empty: my-token:)"
            )
        scope_text, _, workspace = rest.partition(":")
        workspace, _, app = workspace.partition(":")
        scopes = set()
        for raw in filter(None, (s.strip() for s in scope_text.split(","))):
            if raw not in SCOPE_ALIASES:
                raise ValueError(
                    f"unknown scope {raw!r}; use read, write, {READ_SCOPE} or {WRITE_SCOPE}"
                )
            scopes.add(SCOPE_ALIASES[raw])
        return cls(
            value=value,
            scopes=frozenset(scopes),
            workspace=workspace or DEFAULT_WORKSPACE,
            app=app or None,
        )


@dataclass(frozen=True, slots=True)
class StoredSecret:
    """One secret as Intercom keeps it, material included."""

    id: str
    workspace: str
    name: str
    secret: str
    supports_web: bool
    supports_ios: bool
    supports_android: bool
    created_at: int
    deleted_at: int | None = None
    #: The same two moments to the fraction of a second (the store's clock), so that a list
    #: answer can show the workspace as it was at any past instant (``list_lag``).
    born: float = 0.0
    died: float | None = None

    def __repr__(self) -> str:
        return f"StoredSecret(id={self.id!r}, name={self.name!r}, deleted_at={self.deleted_at})"

    def public(self) -> dict[str, Any]:
        """The contract's ``identity_verification_secret``: no material."""
        return {
            "type": "identity_verification_secret",
            "id": self.id,
            "name": self.name,
            "supports_android": self.supports_android,
            "supports_ios": self.supports_ios,
            "supports_web": self.supports_web,
            "created_at": self.created_at,
        }

    def with_material(self) -> dict[str, Any]:
        """The create answer: ``identity_verification_secret_with_material``."""
        return {**self.public(), "secret": self.secret}

    def signs_for(self, platform: str | None) -> bool:
        return platform is None or bool(getattr(self, f"supports_{platform}", False))

    def live_at(self, instant: float) -> bool:
        """Whether the secret existed, not yet deleted, at ``instant`` (the store's clock)."""
        return self.born <= instant and (self.died is None or self.died > instant)


@dataclass
class _World:
    secrets: dict[str, StoredSecret] = field(default_factory=dict)
    next_id: int = 100


def new_material() -> str:
    """256 random bits, base64url without padding: what Intercom hands out."""
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()


def user_hash(secret: str, user_id: str) -> str:
    """What a customer's backend sends as ``user_hash``: HMAC-SHA256 hex of ``user_id``."""
    return hmac.new(secret.encode(), user_id.encode(), hashlib.sha256).hexdigest()


def messenger_jwt(secret: str, user_id: str, *, exp: int | None = None) -> str:
    """What a customer's backend hands the Messenger instead of a ``user_hash``: a JWT signed
    with HS256 by the same secret, carrying ``user_id`` and, optionally, ``exp`` (unix seconds).
    The one encoder: the demo, the tests and the docs all sign this way."""
    claims: dict[str, Any] = {"user_id": user_id}
    if exp is not None:
        claims["exp"] = exp
    return jwt.encode(claims, secret, algorithm="HS256")


def _jwt_claims(token: str, secret: str) -> dict[str, Any] | None:
    """The claims of ``token`` if ``secret`` signed it with HS256, else ``None``.

    HS256 only: a token naming ``none``, HS512 or an RSA algorithm is refused before any key is
    tried (RFC 8725 section 2.1). ``exp`` is checked by the caller against the emulator's clock,
    which tests move without sleeping (PyJWT would read the wall clock), and Messenger JWTs carry
    no audience: one a customer adds is not what Messenger checks."""
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=["HS256"],
            options={
                "require": ["user_id"],
                "verify_exp": False,
                "verify_nbf": False,
                "verify_iat": False,
                "verify_aud": False,
            },
        )
    except jwt.InvalidTokenError:
        return None
    return claims if isinstance(claims, dict) else None


def _jwt_current(claims: dict[str, Any], user_id: str | None, now: float) -> bool:
    """Whether verified claims name a user (``user_id`` when one is given) and have not expired
    at ``now``."""
    claimed = claims.get("user_id")
    if not isinstance(claimed, str) or not claimed:
        return False
    if user_id is not None and not hmac.compare_digest(claimed.encode(), user_id.encode()):
        return False
    if "exp" not in claims:
        return True
    exp = claims["exp"]
    return isinstance(exp, int | float) and not isinstance(exp, bool) and exp > now


class Store:
    """Thread-safe secrets of every workspace, optionally persisted to a JSON file."""

    def __init__(
        self,
        path: Path | None = None,
        clock: Callable[[], float] = time.time,
        on_delete: Callable[[StoredSecret], None] | None = None,
    ) -> None:
        self._path = path
        self._clock = clock
        # Called just before a live secret is deleted (tests audit what was live elsewhere then).
        self.on_delete = on_delete
        self._lock = threading.Lock()
        self._world = self._load(path) if path is not None and path.exists() else _World()

    # --- the API's operations ---------------------------------------------------------------

    def create(
        self, workspace: str, name: str, *, web: bool, ios: bool, android: bool
    ) -> StoredSecret:
        with self._lock:
            now = self._clock()
            secret = StoredSecret(
                id=str(self._world.next_id),
                workspace=workspace,
                name=name,
                secret=new_material(),
                supports_web=web,
                supports_ios=ios,
                supports_android=android,
                created_at=int(now),
                born=now,
            )
            self._world.next_id += 1
            self._world.secrets[secret.id] = secret
            self._save()
            return secret

    def live(self, workspace: str) -> list[StoredSecret]:
        """The workspace's secrets that are not deleted, oldest first."""
        with self._lock:
            return [
                s
                for s in self._world.secrets.values()
                if s.workspace == workspace and s.deleted_at is None
            ]

    def live_ago(self, workspace: str, seconds: float) -> list[StoredSecret]:
        """The workspace's live secrets as they were ``seconds`` ago: what a list answer that
        lags behind creates and deletes shows (secrets created since are missing, secrets
        deleted since are still there)."""
        instant = self._clock() - seconds
        with self._lock:
            return [
                s
                for s in self._world.secrets.values()
                if s.workspace == workspace and s.live_at(instant)
            ]

    def delete(self, workspace: str, secret_id: str) -> bool:
        """Soft-delete; ``False`` when there is no such live secret in the workspace."""
        hook = self.on_delete
        if hook is not None:
            target = self.get(secret_id)
            if target is not None and target.workspace == workspace and target.deleted_at is None:
                hook(target)
        with self._lock:
            secret = self._world.secrets.get(secret_id)
            if secret is None or secret.workspace != workspace or secret.deleted_at is not None:
                return False
            now = self._clock()
            self._world.secrets[secret_id] = replace(secret, deleted_at=int(now), died=now)
            self._save()
            return True

    def verify(
        self, workspace: str, user_id: str, claimed_hash: str, platform: str | None = None
    ) -> bool:
        """Whether ``claimed_hash`` signs ``user_id`` with a live secret, as Messenger checks."""
        claimed = claimed_hash.strip().lower().encode()
        return any(
            hmac.compare_digest(user_hash(s.secret, user_id).encode(), claimed)
            for s in self.live(workspace)
            if s.signs_for(platform)
        )

    def verify_jwt(
        self, workspace: str, token: str, *, user_id: str | None = None, platform: str | None = None
    ) -> bool:
        """Whether ``token`` is a Messenger JWT signed (HS256) by a live secret, with a non-empty
        ``user_id`` claim (equal to ``user_id`` when given) and an ``exp``, when present, still
        ahead of the store's clock."""
        now = self._clock()
        for stored in self.live(workspace):
            if not stored.signs_for(platform):
                continue
            claims = _jwt_claims(token, stored.secret)
            if claims is not None:
                return _jwt_current(claims, user_id, now)
        return False

    # --- for tests and tools ----------------------------------------------------------------

    def get(self, secret_id: str) -> StoredSecret | None:
        """Any secret by id, deleted ones included."""
        with self._lock:
            return self._world.secrets.get(secret_id)

    def all(self, workspace: str | None = None) -> list[StoredSecret]:
        """Every secret ever created (in ``workspace``), deleted ones included."""
        with self._lock:
            return [
                s
                for s in self._world.secrets.values()
                if workspace is None or s.workspace == workspace
            ]

    def workspaces(self) -> Iterable[str]:
        with self._lock:
            return sorted({s.workspace for s in self._world.secrets.values()})

    # --- persistence ------------------------------------------------------------------------

    def _save(self) -> None:
        if self._path is None:
            return
        payload = {
            "version": _STATE_VERSION,
            "next_id": self._world.next_id,
            "secrets": [asdict(s) for s in self._world.secrets.values()],
        }
        directory = self._path.parent
        directory.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".emulator-", dir=directory)
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(payload, f)
                f.flush()
                os.fsync(f.fileno())
            Path(tmp).chmod(0o600)
            Path(tmp).replace(self._path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    @staticmethod
    def _load(path: Path) -> _World:
        try:
            payload = json.loads(path.read_text())
            version = payload.get("version")
            stored = [_stored(item) for item in payload.get("secrets", [])]
            next_id = int(payload.get("next_id", 100))
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
            raise StateFileError(f"cannot read emulator state file {path}: {e}") from e
        if version != _STATE_VERSION:
            raise StateFileError(f"{path}: unsupported state version {version!r}")
        return _World(secrets={s.id: s for s in stored}, next_id=next_id)


def _stored(item: dict[str, Any]) -> StoredSecret:
    # Files written before list lag existed carry whole seconds only.
    item.setdefault("born", float(item["created_at"]))
    if item.get("deleted_at") is not None:
        item.setdefault("died", float(item["deleted_at"]))
    return StoredSecret(**item)


class StateFileError(Exception):
    """The ``--state`` file exists but is not an emulator state file."""
