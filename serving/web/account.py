"""Signing in and out, the language switch, and the pages every refusal ends on."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI, Form, Query, Request
from fastapi.responses import Response

from features.contract.vocabulary import LANGS
from serving.api.deps import Services, services
from serving.storage.web_records import SESSION_HOURS
from serving.web.i18n import N_, Texts
from serving.web.render import home, redirect, render
from serving.web.session import (
    LANG_COOKIE,
    PATH,
    SESSION_COOKIE,
    SIGNIN_COOKIE,
    PageError,
    SignInRequired,
    browser_lang,
    check_csrf,
    new_signin_nonce,
    optional_user,
    set_cookie,
    signed_in,
)

router = APIRouter(prefix="/app", include_in_schema=False)
Svc = Annotated[Services, Depends(services)]
TOKEN_CHARS = 200
INVALID = N_("Some of what was sent is not valid. Go back and try again.")
BAD_TOKEN = N_("That token is not valid, or has expired or been revoked.")
YEAR_S = 365 * 86400


@router.get("")
@router.get("/")
def root(request: Request, svc: Svc) -> Response:
    web = optional_user(request, svc)
    return redirect(home(web) if web else "/app/signin")


@router.get("/signin")
def signin_page(
    request: Request, svc: Svc, lang: Annotated[str | None, Query(max_length=2)] = None
) -> Response:
    web = optional_user(request, svc)
    if web is not None:
        return redirect(home(web))
    return _signin(request, lang if lang in LANGS else None)


def _signin(request: Request, lang: str | None, status: int = 200, error: str = "") -> Response:
    nonce = new_signin_nonce()
    texts = Texts(lang or browser_lang(request))  # drawn in the language just picked
    response = render(request, "signin.html", None, status, texts, nonce=nonce, error=error)
    set_cookie(request, response, SIGNIN_COOKIE, nonce, 3600)
    if lang:
        set_cookie(request, response, LANG_COOKIE, lang, YEAR_S)
    return response


@router.post("/signin")
def signin(
    request: Request,
    svc: Svc,
    token: Annotated[str, Form(max_length=TOKEN_CHARS)],
    nonce: Annotated[str, Form(max_length=64)] = "",
) -> Response:
    check_csrf(request.cookies.get(SIGNIN_COOKIE, ""), nonce)
    user = svc.tokens.authenticate(token.strip())
    if user is None or user.token_id is None:
        return _signin(request, None, 401, BAD_TOKEN)
    request.state.user = user
    sid, _ = svc.web.open_session(user.token_id)
    if svc.web.lang(user.user) is None:  # the language picked before signing in stays
        svc.web.set_lang(user.user, browser_lang(request))
    response = redirect("/app/")
    set_cookie(request, response, SESSION_COOKIE, sid, SESSION_HOURS * 3600)
    response.delete_cookie(SIGNIN_COOKIE, path=PATH)
    return response


@router.post("/signout")
def signout(request: Request, svc: Svc, csrf: Annotated[str, Form(max_length=64)] = "") -> Response:
    web = signed_in(request, svc)
    check_csrf(web.session.csrf, csrf)
    svc.web.close_session(request.cookies[SESSION_COOKIE])
    response = redirect("/app/signin")
    response.delete_cookie(SESSION_COOKIE, path=PATH)
    return response


@router.post("/lang")
def switch_language(
    request: Request,
    svc: Svc,
    lang: Annotated[str, Form(max_length=2)],
    csrf: Annotated[str, Form(max_length=64)] = "",
    back: Annotated[str, Form(max_length=2000)] = "/app/",
) -> Response:
    web = signed_in(request, svc)
    check_csrf(web.session.csrf, csrf)
    if lang not in LANGS:
        raise PageError(422, "Unknown language.")
    svc.web.set_lang(web.user.user, lang)
    # back to the same page, never to another site
    return redirect(back if back.startswith("/app/") and "//" not in back else "/app/")


def install(app: FastAPI) -> None:
    """The web pages' routers and their refusals, rendered as pages in the user's language."""

    @app.exception_handler(SignInRequired)
    def to_signin(request: Request, exc: SignInRequired) -> Response:
        return redirect("/app/signin")

    @app.exception_handler(PageError)
    def refused(request: Request, exc: PageError) -> Response:
        return refusal_page(request, exc.status, exc.message)


def refusal_page(request: Request, status: int, message: str) -> Response:
    web = optional_user(request, request.app.state.services)
    return render(request, "error.html", web, status, message=message)
