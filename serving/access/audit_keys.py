"""The audit trail's keys: the chain is sealed with an HMAC whose key lives outside the
database, so whoever owns the database (and can drop its triggers) cannot rewrite rows and
recompute their seals.

The key ring is a small JSON file, owner-only (`SUNSHINE_AUDIT_KEYS`, else `audit-keys.json`
in the home): every key by id, newest last, and `keyed_from`, the first row sealed with a key
(rows before it were written before keys existed and are sealed with plain SHA-256). Rotating
adds a key; rows name the key that sealed them, so every key stays in the ring. Several hosts
appending to one trail share one ring, distributed as a TLS key would be.
"""

from __future__ import annotations

import datetime as dt
import json
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from features.core.errors import ConfigError
from features.core.io import atomic_path


@dataclass
class KeyRing:
    path: Path
    keyed_from: int
    keys: dict[str, bytes] = field(default_factory=dict)  # id -> secret, oldest first
    stamp: float = 0.0  # the file's modification time when read

    @property
    def newest(self) -> tuple[str, bytes]:
        key_id = next(reversed(self.keys))
        return key_id, self.keys[key_id]

    @classmethod
    def read(cls, path: Path) -> KeyRing:
        try:
            raw = json.loads(path.read_text())
            keys = {k["id"]: bytes.fromhex(k["secret"]) for k in raw["keys"]}
            ring = cls(path, int(raw["keyed_from"]), keys, path.stat().st_mtime)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"{path}: not a readable audit key ring ({exc})") from None
        if not ring.keys:
            raise ConfigError(f"{path}: the audit key ring holds no key")
        return ring

    @classmethod
    def open(cls, path: Path, next_row: int) -> KeyRing:
        """The ring at `path`, made with a first key if there is none: rows from `next_row`
        on are sealed with a key."""
        if path.exists():
            return cls.read(path)
        ring = cls(path, next_row)
        ring.rotate()
        return ring

    def rotate(self) -> str:
        """Add a new key, which seals every row written from now on; returns its id."""
        key_id = f"k{len(self.keys) + 1}"
        self.keys[key_id] = secrets.token_bytes(32)
        self._save()
        return key_id

    def refreshed(self) -> KeyRing:
        """The ring as its file is now (a rotation by `sunshine audit rotate-key` reaches a
        running writer at its next commit)."""
        try:
            changed = self.path.stat().st_mtime != self.stamp
        except OSError:
            return self
        return KeyRing.read(self.path) if changed else self

    def _save(self) -> None:
        body = {
            "keyed_from": self.keyed_from,
            "keys": [{"id": k, "secret": s.hex()} for k, s in self.keys.items()],
            "saved": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        }
        with atomic_path(self.path, private=True) as tmp:
            tmp.write_text(json.dumps(body, indent=1))
        self.stamp = self.path.stat().st_mtime
