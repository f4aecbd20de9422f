"""Bearer tokens, stored only as SHA-256 hashes, each mapped to a user, a role and a scope.

They live in a file (`tokens.json`, owner-only) by default, or in the service's database when
SUNSHINE_DATABASE_URL names one, so every worker and host sees one list: a token created or
revoked by `sunshine tokens` reaches every running service within RECHECK_S seconds.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import hmac
import json
import secrets
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from sqlalchemy import Engine, text

from features.contract.vocabulary import DISTRICTS
from features.core.errors import ConfigError, InputError
from features.core.io import atomic_path
from features.core.settings import settings
from serving.access.roles import ROLES, SCOPES, User
from serving.storage.service_db import open_database

DEFAULT_EXPIRY_DAYS = 90


@dataclass
class TokenEntry:
    sha256: str
    user: str
    role: str
    districts: list[str] = field(default_factory=list)
    scopes: list[str] = field(default_factory=list)
    created: str = ""
    expires: str = ""  # ISO time; empty never expires (files written before expiry existed)
    revoked: str = ""  # ISO time of revocation; empty while valid

    @property
    def id(self) -> str:
        """A public name for the token: the start of its hash, which says nothing of it."""
        return self.sha256[:12]

    def valid_at(self, now: dt.datetime) -> bool:
        return not self.revoked and (
            not self.expires or now < dt.datetime.fromisoformat(self.expires)
        )


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def tokens_path() -> Path:
    return settings().tokens_file


def _read(path: Path) -> list[TokenEntry]:
    if not path.exists():
        return []
    try:
        raw = json.loads(path.read_text())
        return [TokenEntry(**e) for e in raw.get("tokens", [])]
    except (ValueError, TypeError, AttributeError) as exc:
        raise ConfigError(f"{path}: not a valid tokens file ({exc})") from None


class TokenStore:
    """The tokens of a file, followed while the service runs: a token created, revoked or
    expired takes effect within `RECHECK_S` seconds, without a restart."""

    RECHECK_S = 1.0

    def __init__(self, entries: list[TokenEntry], path: Path | None = None) -> None:
        self.entries = entries
        self.path = path
        self._seen: tuple[float, int] | None = self._stamp()
        self._checked = time.monotonic()
        self._lock = threading.Lock()
        self.engine: Engine | None = None  # the service's database, when tokens live there

    @classmethod
    def load(cls, path: Path | None = None) -> TokenStore:
        url = settings().database_url
        if url and path is None:
            engine = open_database(url)
            store = cls(_read_table(engine), None)
            store.engine = engine
            return store
        path = path or tokens_path()
        return cls(_read(path), path)

    def _stamp(self) -> tuple[float, int] | None:
        try:
            st = self.path.stat() if self.path else None
        except FileNotFoundError:
            return None
        return (st.st_mtime, st.st_size) if st else None

    def due(self) -> bool:
        """Whether the next look-up re-reads the tokens (and so may wait on a disk or a
        database): an async caller does that in a thread."""
        return time.monotonic() - self._checked >= self.RECHECK_S

    def follow(self) -> None:
        """Re-read the file when it changed, at most once every RECHECK_S seconds. A file
        that cannot be read keeps the tokens already loaded: a half-edited file never opens
        or closes the door."""
        if not self.due():
            return
        if self.engine is not None:
            with self._lock:
                self._checked = time.monotonic()
                with contextlib.suppress(Exception):  # unreachable: keep the tokens we have
                    self.entries = _read_table(self.engine)
            return
        if self.path is None:
            return
        with self._lock:
            self._checked = time.monotonic()
            stamp = self._stamp()
            if stamp == self._seen:
                return
            try:
                self.entries = _read(self.path)
            except ConfigError:
                return
            self._seen = stamp

    @property
    def where(self) -> str:
        """Where the tokens are kept, as messages name it."""
        return "the service's database" if self.engine is not None else str(self.path)

    def save(self, path: Path | None = None) -> None:
        if self.engine is not None:
            _write_table(self.engine, self.entries)
            return
        path = path or self.path or tokens_path()
        with atomic_path(path, private=True) as tmp:
            tmp.write_text(json.dumps({"tokens": [asdict(e) for e in self.entries]}, indent=1))

    def authenticate(self, token: str) -> User | None:
        self.follow()
        h = digest(token)
        now = dt.datetime.now(dt.UTC)
        for e in self.entries:
            if hmac.compare_digest(e.sha256, h):
                return _user(e, now)
        return None

    def by_id(self, token_id: str) -> User | None:
        """The user of a still-valid token, by its public id: a web session names the token
        it was opened with, so revoking the token ends the session too."""
        self.follow()
        now = dt.datetime.now(dt.UTC)
        return next((_user(e, now) for e in self.entries if e.id == token_id), None)

    def for_user(self, user: str) -> User | None:
        """The user behind a password sign-in: their newest valid token's identity (role,
        districts, scopes), None when they have no valid token (revoked or expired)."""
        self.follow()
        now = dt.datetime.now(dt.UTC)
        mine = [e for e in self.entries if e.user == user and e.valid_at(now)]
        return _user(max(mine, key=lambda e: e.created), now) if mine else None

    def create(
        self,
        user: str,
        role: str,
        districts: list[str] | None = None,
        scopes: list[str] | None = None,
        expires_days: int = DEFAULT_EXPIRY_DAYS,
    ) -> str:
        """Add a token for the user and return it; only its hash is kept."""
        if role not in ROLES:
            raise InputError(f"unknown role {role!r} (allowed: {', '.join(ROLES)})")
        bad = [d for d in districts or [] if d not in DISTRICTS]
        if bad:
            raise InputError(
                f"unknown district(s) {', '.join(bad)} (allowed: {', '.join(DISTRICTS)})"
            )
        bad = [s for s in scopes or [] if s not in SCOPES]
        if bad:
            raise InputError(f"unknown scope(s) {', '.join(bad)} (allowed: {', '.join(SCOPES)})")
        if role == "caseworker" and not districts:
            raise InputError("a caseworker token needs --districts")
        if not 1 <= expires_days <= 366:
            raise InputError("--expires must be between 1 and 366 days")
        token = secrets.token_urlsafe(32)
        now = dt.datetime.now(dt.UTC)
        self.entries.append(
            TokenEntry(
                digest(token),
                user,
                role,
                list(districts or []),
                list(scopes or []),
                now.isoformat(timespec="seconds"),
                (now + dt.timedelta(days=expires_days)).isoformat(timespec="seconds"),
            )
        )
        return token

    def revoke(self, token_id: str | None = None, user: str | None = None) -> list[TokenEntry]:
        """Revoke one token by its id, or every token of a user; returns those revoked."""
        if bool(token_id) == bool(user):
            raise InputError("name a token with --id, or a user with --user (one of the two)")
        now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        hit = [
            e
            for e in self.entries
            if not e.revoked and (e.id == token_id if token_id else e.user == user)
        ]
        if not hit:
            which = f"with id {token_id}" if token_id else f"of user {user}"
            raise InputError(f"no valid token {which}")
        for e in hit:
            e.revoked = now
        return hit

    def listing(self, last_used: dict[str, str] | None = None) -> list[dict[str, str]]:
        """Every token's facts, never its secret or its hash."""
        now = dt.datetime.now(dt.UTC)
        return [
            {
                "id": e.id,
                "user": e.user,
                "role": e.role,
                "districts": ",".join(e.districts),
                "scope": ",".join(e.scopes),
                "created": e.created,
                "expires": e.expires or "never",
                "status": "revoked" if e.revoked else ("valid" if e.valid_at(now) else "expired"),
                "last_used": (last_used or {}).get(e.id, ""),
            }
            for e in self.entries
        ]


def _user(e: TokenEntry, now: dt.datetime) -> User | None:
    if not e.valid_at(now):
        return None
    return User(e.user, e.role, tuple(e.districts), tuple(e.scopes), e.id)


def _read_table(engine: Engine) -> list[TokenEntry]:
    with engine.connect() as con:
        rows = con.execute(
            text(
                "SELECT sha256, user_name, role, districts, scopes, created, expires, revoked "
                "FROM tokens"
            )
        ).all()
    return [
        TokenEntry(
            h, u, r, [d for d in ds.split(",") if d], [s for s in ss.split(",") if s], c, e, rv
        )
        for h, u, r, ds, ss, c, e, rv in rows
    ]


def _write_table(engine: Engine, entries: list[TokenEntry]) -> None:
    """Every token, new ones added and revocations recorded; a hash once stored stays."""
    with engine.begin() as con:
        for e in entries:
            con.execute(
                text(
                    "INSERT INTO tokens VALUES (:h, :u, :r, :d, :s, :c, :e, :rv) "
                    "ON CONFLICT (sha256) DO UPDATE SET revoked = :rv, expires = :e"
                ),
                {
                    "h": e.sha256,
                    "u": e.user,
                    "r": e.role,
                    "d": ",".join(e.districts),
                    "s": ",".join(e.scopes),
                    "c": e.created,
                    "e": e.expires,
                    "rv": e.revoked,
                },
            )
