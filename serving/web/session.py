"""Who is signed in to the web pages, and the guards on every form.

Sign-in exchanges a token for a session: the browser keeps only a random session id, in an
HttpOnly, SameSite=Strict cookie (Secure when the page came over HTTPS) that expires with the
session. Every form that changes something carries the session's CSRF token, compared in
constant time; the sign-in form, before any session exists, carries a one-off value that must
match a cookie of its own (a double-submit token), so another site cannot sign a browser in
under its own token either.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass

from fastapi import Request
from fastapi.responses import Response

from features.contract.vocabulary import LANGS
from serving.access.roles import User
from serving.api.deps import Services
from serving.storage.web_records import Session
from serving.web.i18n import DEFAULT_LANG, Texts

SESSION_COOKIE = "sunshine_session"
SIGNIN_COOKIE = "sunshine_signin"
LANG_COOKIE = "sunshine_lang"
PATH = "/app"


class SignInRequired(Exception):
    """No valid session: the page sends the browser to the sign-in page."""


class PageError(Exception):
    """A refusal shown as a page in the user's language; `message` is a catalogue message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class WebUser:
    user: User
    session: Session
    lang: str

    @property
    def texts(self) -> Texts:
        return Texts(self.lang)


def browser_lang(request: Request) -> str:
    """The language before sign-in: the one picked on the sign-in page, else Chinese."""
    lang = request.cookies.get(LANG_COOKIE, DEFAULT_LANG)
    return lang if lang in LANGS else DEFAULT_LANG


def optional_user(request: Request, svc: Services) -> WebUser | None:
    sid = request.cookies.get(SESSION_COOKIE)
    session = svc.web.session(sid) if sid and len(sid) <= 128 else None
    user = svc.tokens.by_id(session.token_id) if session else None
    if session is None or user is None:
        return None
    request.state.user = user  # the audit trail's who, as for a bearer token
    return WebUser(user, session, svc.web.lang(user.user) or browser_lang(request))


def signed_in(request: Request, svc: Services, *roles: str) -> WebUser:
    """The signed-in user, who must have one of `roles`; else to the sign-in page, or 403."""
    web = optional_user(request, svc)
    if web is None:
        raise SignInRequired()
    if roles and web.user.role not in roles:
        raise PageError(403, "Your role may not open this page.")
    return web


def check_csrf(expected: str, sent: str) -> None:
    if not sent or not hmac.compare_digest(expected.encode(), sent.encode()):
        raise PageError(403, "This form has expired. Go back, reload the page and try again.")


def set_cookie(request: Request, response: Response, name: str, value: str, seconds: int) -> None:
    response.set_cookie(
        name,
        value,
        max_age=seconds,
        path=PATH,
        httponly=True,
        samesite="strict",
        secure=request.scope.get("scheme") == "https",  # as a trusted proxy says, too
    )


def new_signin_nonce() -> str:
    return secrets.token_urlsafe(24)
