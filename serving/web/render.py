"""Pages rendered from the package's Jinja2 templates, with the headers every page carries."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from serving.api.page_headers import PAGE_HEADERS
from serving.web.i18n import SHOWN_FALL, Texts
from serving.web.session import WebUser, browser_lang

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=HERE / "templates")
templates.env.trim_blocks = True
templates.env.lstrip_blocks = True


def present(value: Any) -> bool:
    """Whether a value is there: pandas gives a missing one as None, NaN or NaT."""
    return value is not None and not pd.isna(value)


def number(value: Any) -> str:
    """A figure as a caseworker reads it: at most 4 significant digits, no trailing '.0'."""
    if isinstance(value, float | int) and not isinstance(value, bool):
        return f"{value:.4g}"
    return str(value)


templates.env.globals.update(present=present, number=number)
# `change is lowering`: an estimated change of a support option worth showing (i18n.SHOWN_FALL)
templates.env.tests["lowering"] = lambda change: present(change) and change < SHOWN_FALL


def secure(response: Response) -> Response:
    response.headers.update(PAGE_HEADERS)
    return response


def render(
    request: Request,
    name: str,
    web: WebUser | None,
    status: int = 200,
    texts: Texts | None = None,
    **context: Any,
) -> HTMLResponse:
    texts = texts or (web.texts if web else Texts(browser_lang(request)))
    response = templates.TemplateResponse(
        request,
        name,
        {"_": texts, "web": web, "csrf": web.session.csrf if web else "", **context},
        status_code=status,
    )
    secure(response)
    return response


def redirect(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


def home(web: WebUser) -> str:
    """Where a user lands: caseworkers on their caseload, programme staff on the programme."""
    return "/app/caseload" if web.user.role in ("caseworker", "analyst") else "/app/programme"
