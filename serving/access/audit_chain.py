"""The audit trail's hash chain: an entry's fields, the hash that seals a row to the one before it,
and a verification's verdict. Storage and writing are audit.py's."""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass

GENESIS = "0" * 64  # the "previous hash" of the first row


COLUMNS = (
    "time",
    "user",
    "role",
    "token_id",
    "route",
    "person_id",
    "task",
    "as_of",
    "model_version",
    "probability",
    "tier",
    "request_id",
    "client_request_id",
    "client",
    "status",
)


# the columns as SQL names them ("user" is a reserved word in PostgreSQL)
NAMES = ", ".join(f'"{c}"' if c == "user" else c for c in COLUMNS)


@dataclass
class Entry:
    route: str
    request_id: str
    status: int
    user: str | None = None
    role: str | None = None
    token_id: str | None = None
    person_id: str | None = None
    task: str | None = None
    as_of: str | None = None
    model_version: str | None = None
    probability: float | None = None
    tier: str | None = None
    client_request_id: str | None = None
    client: str | None = None


def row_hash(prev: str, row_id: int, values: tuple, key: tuple[str, bytes] | None = None) -> str:
    """The seal of a row: its id and every field, in order, and the previous seal. With a
    key, an HMAC named by the key's id (`k2:...`), which nobody without the key can
    recompute; without one (rows written before keys existed), plain SHA-256."""
    body = json.dumps([prev, row_id, *values], ensure_ascii=False, separators=(",", ":"))
    if key is None:
        return hashlib.sha256(body.encode()).hexdigest()
    key_id, secret = key
    return f"{key_id}:" + hmac.new(secret, body.encode(), hashlib.sha256).hexdigest()


def key_of(sealed: str) -> str | None:
    """The id of the key that sealed a row, or None for a plain SHA-256 seal."""
    key_id, colon, _ = sealed.partition(":")
    return key_id if colon else None


@dataclass(frozen=True)
class Verdict:
    rows: int
    broken_at: int | None  # the id of the first row whose link does not hold
    reason: str
    head: tuple[int, str] | None = None  # the last row's id and seal, where all held

    @property
    def intact(self) -> bool:
        return self.broken_at is None
