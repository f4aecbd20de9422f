"""Signing in: a user name and password for people (set once through an admin's one-time
code), an access token for whoever holds one, and a device kept signed in for a working week
when asked.

Every wrong attempt counts against the user name and the address it came from (see
serving.access.passwords): after a few, the next is refused with 429 and the seconds to wait
until the delay, doubling each time, has passed. Every attempt, refused or not, is in the
audit trail as any request is, with its status."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import Response

from features.contract.vocabulary import LANGS
from serving.access.passwords import MAX_PASSWORD, Passwords, password_problem
from serving.access.roles import User
from serving.api.deps import Services, services
from serving.storage.web_records import SESSION_HOURS
from serving.web.i18n import N_, Texts
from serving.web.render import home, redirect, render
from serving.web.session import (
    LANG_COOKIE,
    PATH,
    SESSION_COOKIE,
    SIGNIN_COOKIE,
    browser_lang,
    check_csrf,
    new_signin_nonce,
    optional_user,
    set_cookie,
)

router = APIRouter(prefix="/app", include_in_schema=False)
Svc = Annotated[Services, Depends(services)]
TOKEN_CHARS = 200
USER_CHARS = 64
WORK_WEEK_HOURS = 5 * 24
YEAR_S = 365 * 86400
BAD_TOKEN = N_("That token is not valid, or has expired or been revoked.")
BAD_PASSWORD = N_("The user name or the password is wrong.")
TOO_MANY = N_("Too many wrong attempts. Try again in %(s)s seconds.")
BAD_CODE = N_("That code is not valid for this user name, or it has expired or been used.")
PASSWORD_SET = N_("Your password is set. Sign in with it.")
PASSWORD_PROBLEMS = {
    "differ": N_("The two passwords differ."),
    "length": N_("A password has 10 to 128 characters."),
    "user_name": N_("A password must not be the user name."),
}


@router.get("/signin")
def signin_page(
    request: Request,
    svc: Svc,
    lang: Annotated[str | None, Query(max_length=2)] = None,
    done: Annotated[bool, Query()] = False,
) -> Response:
    web = optional_user(request, svc)
    if web is not None:
        return redirect(home(web))
    return _form(request, "signin.html", lang if lang in LANGS else None, notice=done)


def _form(
    request: Request,
    template: str,
    lang: str | None = None,
    status: int = 200,
    error: str = "",
    wait: int = 0,
    notice: bool = False,
) -> Response:
    """The sign-in or set-up form, with a fresh nonce in its cookie (a form posted from
    another site carries none)."""
    nonce = new_signin_nonce()
    texts = Texts(lang or browser_lang(request))  # drawn in the language just picked
    response = render(
        request, template, None, status, texts, nonce=nonce, error=error, wait=wait,
        notice=PASSWORD_SET if notice else "", max_password=MAX_PASSWORD,
    )  # fmt: skip
    set_cookie(request, response, SIGNIN_COOKIE, nonce, 3600)
    if lang:
        set_cookie(request, response, LANG_COOKIE, lang, YEAR_S)
    if wait:
        response.headers["Retry-After"] = str(wait)
    return response


def _keys(request: Request, user: str | None) -> list[str]:
    """What a failure counts against: the address it came from, and the user name tried."""
    keys = [f"address:{request.client.host if request.client else ''}"]
    return keys + ([f"user:{user.lower()}"] if user is not None else [])


def _heard(
    request: Request, svc: Services, nonce: str, template: str, keys: list[str]
) -> tuple[Passwords, Response | None]:
    """A form post is heard only with its nonce and when no key is waiting out a delay:
    else the form again, with 429 and the seconds to wait."""
    check_csrf(request.cookies.get(SIGNIN_COOKIE, ""), nonce)
    passwords = Passwords(svc.web.engine)
    wait = passwords.wait_s(*keys)
    return passwords, _form(request, template, None, 429, TOO_MANY, wait) if wait else None


@router.post("/signin")
def signin(
    request: Request,
    svc: Svc,
    nonce: Annotated[str, Form(max_length=64)] = "",
    user: Annotated[str, Form(max_length=USER_CHARS)] = "",
    password: Annotated[str, Form(max_length=MAX_PASSWORD)] = "",
    token: Annotated[str, Form(max_length=TOKEN_CHARS)] = "",
    keep: Annotated[bool, Form()] = False,
) -> Response:
    name = user.strip()
    keys = _keys(request, None if token else name)
    passwords, refused = _heard(request, svc, nonce, "signin.html", keys)
    if refused:
        return refused
    who: User | None
    if token:
        who = svc.tokens.authenticate(token.strip())
    else:
        who = svc.tokens.for_user(name) if passwords.check(name, password) else None
    if who is None or who.token_id is None:
        passwords.failed(*keys)
        return _form(request, "signin.html", None, 401, BAD_TOKEN if token else BAD_PASSWORD)
    passwords.succeeded(*keys)
    request.state.user = who
    hours = WORK_WEEK_HOURS if keep else SESSION_HOURS
    sid, _ = svc.web.open_session(who.token_id, hours)
    if svc.web.lang(who.user) is None:  # the language picked before signing in stays
        svc.web.set_lang(who.user, browser_lang(request))
    response = redirect("/app/")
    set_cookie(request, response, SESSION_COOKIE, sid, hours * 3600)
    response.delete_cookie(SIGNIN_COOKIE, path=PATH)
    return response


@router.get("/setup")
def setup_page(request: Request) -> Response:
    """Where a new user sets their password with the code an admin gave them."""
    return _form(request, "setup.html")


@router.post("/setup")
def setup(
    request: Request,
    svc: Svc,
    nonce: Annotated[str, Form(max_length=64)] = "",
    user: Annotated[str, Form(max_length=USER_CHARS)] = "",
    code: Annotated[str, Form(max_length=32)] = "",
    password: Annotated[str, Form(max_length=MAX_PASSWORD)] = "",
    again: Annotated[str, Form(max_length=MAX_PASSWORD)] = "",
) -> Response:
    name = user.strip()
    keys = _keys(request, name)
    passwords, refused = _heard(request, svc, nonce, "setup.html", keys)
    if refused:
        return refused
    problem = password_problem(name, password, again)
    if problem:
        return _form(request, "setup.html", None, 422, PASSWORD_PROBLEMS[problem])
    if svc.tokens.for_user(name) is None or not passwords.set_password(name, code, password):
        passwords.failed(*keys)
        return _form(request, "setup.html", None, 401, BAD_CODE)
    passwords.succeeded(*keys)
    return redirect("/app/signin?done=true")
