"""The web application's own records: sign-in sessions, each user's language, and the
follow-ups caseworkers record.

A session id is a secret like a token: only its SHA-256 is stored, and the browser holds the
id itself in an HttpOnly cookie. A session names the token it was opened with, so revoking the
token (or its expiry) ends the session at the next request. Follow-ups are kept with the user
who recorded them and exported as `support_offered` events of the data contract.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from sqlalchemy import text

from features.core.settings import SERVICE_DB, home
from serving.storage.service_db import database_url, open_database

SESSION_HOURS = 12
OUTCOMES = ("offered", "accepted", "declined")
NOTE_CHARS = 500


@dataclass(frozen=True)
class Session:
    token_id: str
    csrf: str
    expires: dt.datetime


@dataclass(frozen=True)
class Followup:
    person_id: str
    task: str
    option: str  # the support option's code
    outcome: str
    day: dt.date
    note: str
    user: str
    model_version: str | None = None
    recorded: str = ""


def _sha(sid: str) -> str:
    return hashlib.sha256(sid.encode()).hexdigest()


class WebStore:
    """The records in the service's database (see serving.storage.service_db): a SQLite file by
    default, the production database when SUNSHINE_DATABASE_URL names one."""

    def __init__(self, path: Path | str | None = None, url: str | None = None) -> None:
        self.path = Path(path) if path else home() / SERVICE_DB
        self.url = url or database_url(self.path)
        self.engine = open_database(self.url)

    def _run(self, sql: str, **params: object) -> list[tuple]:
        with self.engine.begin() as con:
            result = con.execute(text(sql), params)
            return [tuple(r) for r in result] if result.returns_rows else []

    # -- reloads: an admin's reload reaches every worker and host -----------------------------
    def reload_generation(self) -> int:
        return int(self._run("SELECT generation FROM reloads WHERE id = 1")[0][0])

    def request_reload(self) -> int:
        """Move the counter every service polls; returns its new value."""
        now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        self._run(
            "UPDATE reloads SET generation = generation + 1, requested = :now WHERE id = 1",
            now=now,
        )
        return self.reload_generation()

    # -- sessions ------------------------------------------------------------------------------
    def open_session(self, token_id: str, hours: int = SESSION_HOURS) -> tuple[str, Session]:
        """A new session for a signed-in token: its id (for the cookie, never stored) and
        its facts. Expired sessions are swept at the same time."""
        sid, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        now = dt.datetime.now(dt.UTC)
        expires = now + dt.timedelta(hours=hours)
        self._run("DELETE FROM sessions WHERE expires < :now", now=now.isoformat())
        self._run(
            "INSERT INTO sessions VALUES (:sid, :token, :csrf, :created, :expires)",
            sid=_sha(sid),
            token=token_id,
            csrf=csrf,
            created=now.isoformat(),
            expires=expires.isoformat(),
        )
        return sid, Session(token_id, csrf, expires)

    def session(self, sid: str) -> Session | None:
        rows = self._run(
            "SELECT token_id, csrf, expires FROM sessions WHERE sid_sha256 = :sid", sid=_sha(sid)
        )
        if not rows:
            return None
        token_id, csrf, expires = rows[0]
        until = dt.datetime.fromisoformat(expires)
        return Session(token_id, csrf, until) if until > dt.datetime.now(dt.UTC) else None

    def close_session(self, sid: str) -> None:
        self._run("DELETE FROM sessions WHERE sid_sha256 = :sid", sid=_sha(sid))

    # -- language ------------------------------------------------------------------------------
    def lang(self, user: str) -> str | None:
        rows = self._run("SELECT lang FROM preferences WHERE user_name = :user", user=user)
        return rows[0][0] if rows else None

    def set_lang(self, user: str, lang: str) -> None:
        self._run(
            "INSERT INTO preferences VALUES (:user, :lang) "
            "ON CONFLICT (user_name) DO UPDATE SET lang = :lang",
            user=user,
            lang=lang,
        )

    # -- follow-ups ----------------------------------------------------------------------------
    def add_followup(self, f: Followup) -> None:
        self._run(
            "INSERT INTO followups (recorded, user_name, person_id, task, option, outcome, day, "
            "note, model_version) VALUES (:recorded, :user, :person, :task, :option, :outcome, "
            ":day, :note, :version)",
            recorded=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            user=f.user,
            person=f.person_id,
            task=f.task,
            option=f.option,
            outcome=f.outcome,
            day=f.day.isoformat(),
            note=f.note,
            version=f.model_version,
        )

    def followups(self, person_id: str) -> list[Followup]:
        """A person's follow-ups, latest first."""
        rows = self._run(
            "SELECT person_id, task, option, outcome, day, note, user_name, model_version, "
            "recorded FROM followups WHERE person_id = :person ORDER BY day DESC, id DESC",
            person=person_id,
        )
        return [
            Followup(p, t, o, out, dt.date.fromisoformat(d), n, u, v, r)
            for p, t, o, out, d, n, u, v, r in rows
        ]

    def last_followups(self) -> dict[str, dt.date]:
        """Each person's latest follow-up day, whatever its task or answer: a follow-up is a
        contact, so a caseload shows it as the last contact the moment it is saved."""
        rows = self._run("SELECT person_id, MAX(day) FROM followups GROUP BY person_id")
        return {p: dt.date.fromisoformat(d) for p, d in rows}

    def followup_events(self) -> pd.DataFrame:
        """Every follow-up as a `support_offered` event of the data contract: the option's
        code in `detail`, the answer in `value` (1 accepted, 0 declined, empty while only
        offered), the day it happened as `event_time` and the day it was recorded as
        `recorded_time`."""
        rows = self._run(
            "SELECT person_id, day, option, outcome, recorded FROM followups ORDER BY id"
        )
        frame = pd.DataFrame(rows, columns=["person_id", "day", "option", "outcome", "recorded"])
        return pd.DataFrame(
            {
                "person_id": frame["person_id"],
                "event_time": pd.to_datetime(frame["day"]),
                "event_type": "support_offered",
                "value": frame["outcome"].map({"accepted": 1.0, "declined": 0.0}),
                "detail": frame["option"],
                "recorded_time": pd.to_datetime(frame["recorded"], utc=True)
                .dt.tz_localize(None)
                .dt.floor("s"),
            }
        )
