"""Bearer tokens, stored only as SHA-256 hashes, each mapped to a user, a role and a scope."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import os
import secrets
from dataclasses import asdict, dataclass, field
from pathlib import Path

from features.errors import ConfigError, InputError
from features.io import atomic_path
from features.vocabulary import DISTRICTS

ROLES = ("caseworker", "analyst", "admin")
SCOPES = ("youth",)
DEFAULT_TOKENS_FILE = "tokens.json"


@dataclass(frozen=True)
class User:
    user: str
    role: str
    districts: tuple[str, ...] = ()
    scopes: tuple[str, ...] = ()

    def may_read(self, district: str | None) -> bool:
        """Whether this user may see a person of this district at all."""
        if self.role == "analyst":
            return True
        return self.role == "caseworker" and district is not None and district in self.districts

    def has_scope(self, scope: str | None) -> bool:
        """Whether this user may see a task that needs `scope` (analysts see every task)."""
        return scope is None or self.role == "analyst" or scope in self.scopes


@dataclass
class TokenEntry:
    sha256: str
    user: str
    role: str
    districts: list[str] = field(default_factory=list)
    scopes: list[str] = field(default_factory=list)
    created: str = ""


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def tokens_path() -> Path:
    return Path(os.environ.get("SUNSHINE_TOKENS_FILE", DEFAULT_TOKENS_FILE))


class TokenStore:
    def __init__(self, entries: list[TokenEntry]) -> None:
        self.entries = entries

    @classmethod
    def load(cls, path: Path | None = None) -> TokenStore:
        path = path or tokens_path()
        if not path.exists():
            return cls([])
        try:
            raw = json.loads(path.read_text())
            return cls([TokenEntry(**e) for e in raw.get("tokens", [])])
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"{path}: not a valid tokens file ({exc})") from None

    def save(self, path: Path | None = None) -> None:
        path = path or tokens_path()
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps({"tokens": [asdict(e) for e in self.entries]}, indent=1))
        os.chmod(path, 0o600)

    def authenticate(self, token: str) -> User | None:
        h = digest(token)
        for e in self.entries:
            if hmac.compare_digest(e.sha256, h):
                return User(e.user, e.role, tuple(e.districts), tuple(e.scopes))
        return None

    def create(
        self,
        user: str,
        role: str,
        districts: list[str] | None = None,
        scopes: list[str] | None = None,
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
        token = secrets.token_urlsafe(32)
        self.entries.append(
            TokenEntry(
                digest(token),
                user,
                role,
                list(districts or []),
                list(scopes or []),
                dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            )
        )
        return token
