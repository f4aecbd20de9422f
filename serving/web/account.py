"""Signing out, the language switch, and the pages every refusal ends on (signing in is
serving.web.signin_pages)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI, Form, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from features.contract.vocabulary import LANGS
from serving.api.deps import Services, services
from serving.web.i18n import N_
from serving.web.render import home, redirect, render
from serving.web.session import (
    PATH,
    SESSION_COOKIE,
    PageError,
    SignInRequired,
    check_csrf,
    optional_user,
    signed_in,
)

router = APIRouter(prefix="/app", include_in_schema=False)
Svc = Annotated[Services, Depends(services)]
INVALID = N_("Some of what was sent is not valid. Go back and try again.")
PAGE_NOT_FOUND = N_("There is no such page.")


@router.get("")
@router.get("/")
def root(request: Request, svc: Svc) -> Response:
    web = optional_user(request, svc)
    return redirect(home(web) if web else "/app/signin")


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

    @app.exception_handler(StarletteHTTPException)
    async def unknown_page(request: Request, exc: StarletteHTTPException) -> Response:
        """An unknown address under /app/ is a page in the user's language, with every
        page's headers; the API's stay JSON."""
        if not request.url.path.startswith("/app"):
            return await http_exception_handler(request, exc)
        message = PAGE_NOT_FOUND if exc.status_code == 404 else INVALID
        return await run_in_threadpool(refusal_page, request, exc.status_code, message)


def refusal_page(request: Request, status: int, message: str) -> Response:
    web = optional_user(request, request.app.state.services)
    return render(request, "error.html", web, status, message=message)
