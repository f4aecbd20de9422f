"""Web sign-in for people: a user name and a password, set through a one-time code an admin
issues, and failed attempts slowed down per user and per address.

A caseworker cannot type a 43-character token into a phone every morning; programs keep their
tokens. A password is kept only as its argon2id hash (memory-hard: a stolen table costs an
attacker memory and time per guess), a setup code only as its SHA-256 and for one use before
it expires. The account behind a password is the user's token identity (role, districts,
scopes): revoking the user's tokens closes the door to their password too.

Failures are counted in the service's database, so every worker and host applies one count:
after FREE_FAILURES wrong attempts in a row, each further attempt must wait a delay that
doubles up to MAX_DELAY_S, for the user name and for the address alike.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import secrets
import time

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import Engine, text

CODE_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I/L: read aloud or typed
CODE_CHARS = 10
CODE_HOURS = 72
MIN_PASSWORD = 10
MAX_PASSWORD = 128
FREE_FAILURES = 5
MAX_DELAY_S = 15 * 60
_hasher = PasswordHasher()  # argon2id with the library's recommended cost (RFC 9106)


def _sha(code: str) -> str:
    return hashlib.sha256(code.strip().upper().encode()).hexdigest()


def password_problem(user: str, password: str, again: str) -> str | None:
    """Why a new password is refused (differ, length, user_name), None when it is fine."""
    if password != again:
        return "differ"
    if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        return "length"
    if password.strip().lower() == user.lower():
        return "user_name"
    return None


class Passwords:
    """Passwords, setup codes and failure counts in the service's database."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def _run(self, sql: str, **params: object) -> list[tuple]:
        with self.engine.begin() as con:
            result = con.execute(text(sql), params)
            return [tuple(r) for r in result] if result.returns_rows else []

    # -- setup codes ---------------------------------------------------------------------------
    def issue_code(self, user: str, hours: int = CODE_HOURS) -> str:
        """A new one-time code for `user`; their earlier codes stop working."""
        code = "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_CHARS))
        expires = dt.datetime.now(dt.UTC) + dt.timedelta(hours=hours)
        with self.engine.begin() as con:
            con.execute(text("DELETE FROM setup_codes WHERE user_name = :u"), {"u": user})
            con.execute(
                text("INSERT INTO setup_codes VALUES (:sha, :u, :expires)"),
                {"sha": _sha(code), "u": user, "expires": expires.isoformat()},
            )
        return code

    def set_password(self, user: str, code: str, password: str) -> bool:
        """Set `user`'s password if `code` is their current, unexpired code, which is used up
        either way it matches; False when it does not."""
        now = dt.datetime.now(dt.UTC).isoformat()
        with self.engine.begin() as con:
            used = con.execute(
                text(
                    "DELETE FROM setup_codes WHERE code_sha256 = :sha AND user_name = :u "
                    "AND expires > :now"
                ),
                {"sha": _sha(code), "u": user, "now": now},
            ).rowcount
            if not used:
                return False
            con.execute(text("DELETE FROM passwords WHERE user_name = :u"), {"u": user})
            con.execute(
                text("INSERT INTO passwords VALUES (:u, :hash, :now)"),
                {"u": user, "hash": _hasher.hash(password), "now": now},
            )
        return True

    def check(self, user: str, password: str) -> bool:
        """Whether `password` is `user`'s. A user without one costs the same hashing time,
        so the answer's time does not say which user names exist."""
        rows = self._run("SELECT hash FROM passwords WHERE user_name = :u", u=user)
        stored = rows[0][0] if rows else _dummy()
        try:
            return _hasher.verify(stored, password) and bool(rows)
        except (VerificationError, InvalidHashError):
            return False

    def has_password(self, user: str) -> bool:
        return bool(self._run("SELECT 1 FROM passwords WHERE user_name = :u", u=user))

    def remove(self, user: str) -> None:
        """Forget a user's password and codes (they sign in again only through a new code)."""
        self._run("DELETE FROM passwords WHERE user_name = :u", u=user)
        self._run("DELETE FROM setup_codes WHERE user_name = :u", u=user)

    # -- throttling ----------------------------------------------------------------------------
    def wait_s(self, *keys: str) -> int:
        """Seconds before another attempt is heard for any of `keys` (0: now)."""
        now = time.time()
        longest = 0.0
        for key in keys:
            rows = self._run("SELECT failures, last FROM signin_failures WHERE key = :k", k=key)
            if rows:
                failures, last = rows[0]
                longest = max(longest, last + delay_s(failures) - now)
        return max(0, int(longest + 0.999))

    def failed(self, *keys: str) -> None:
        now = time.time()
        for key in keys:
            self._run(
                "INSERT INTO signin_failures VALUES (:k, 1, :now) ON CONFLICT (key) DO UPDATE "
                "SET failures = signin_failures.failures + 1, last = :now",
                k=key,
                now=now,
            )

    def succeeded(self, *keys: str) -> None:
        for key in keys:
            self._run("DELETE FROM signin_failures WHERE key = :k", k=key)


def delay_s(failures: int) -> float:
    """The wait after `failures` failures in a row: none for the first few, then 1, 2, 4, ...
    seconds, at most MAX_DELAY_S."""
    if failures < FREE_FAILURES:
        return 0.0
    return float(min(2 ** (failures - FREE_FAILURES), MAX_DELAY_S))


@functools.cache
def _dummy() -> str:
    """A hash of nothing anyone knows, checked against for unknown users (the same cost)."""
    return _hasher.hash(secrets.token_urlsafe(16))
