"""The API's documentation pages, served from the package itself.

FastAPI's default `/docs` loads Swagger UI from a CDN, which leaves the page blank on a
government network without internet access. Here its files come from the installed
`swagger-ui-bundle-v2` package, under `/docs/assets`.
"""

from __future__ import annotations

import base64
import hashlib
import re

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel
from swagger_ui_bundle import swagger_ui_path

ASSETS = "/docs/assets"


def add_docs(app: FastAPI, bodies: tuple[type[BaseModel], ...] = ()) -> None:
    """Swagger UI from the package, and the schemas of `bodies`, request bodies a route
    parses itself, into the OpenAPI document's components."""
    default = app.openapi

    def openapi() -> dict:
        if app.openapi_schema is not None:
            return app.openapi_schema
        spec = default()  # FastAPI keeps it as app.openapi_schema: extended in place
        schemas = spec.setdefault("components", {}).setdefault("schemas", {})
        for model in bodies:
            schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
            schemas.update(schema.pop("$defs", {}))
            schemas[model.__name__] = schema
        return spec

    app.openapi = openapi  # type: ignore[method-assign]

    app.mount(ASSETS, StaticFiles(directory=swagger_ui_path), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        page = get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{app.title}: API",
            swagger_js_url=f"{ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS}/favicon-32x32.png",
        )
        page.headers.update(docs_headers(bytes(page.body).decode()))
        return page


def docs_headers(html: str) -> dict[str, str]:
    """The web pages' protections for the docs page: nothing from elsewhere, never framed.
    Its one inline script (Swagger UI's start) is allowed by its hash, no other script."""
    hashes = " ".join(
        "'sha256-" + base64.b64encode(hashlib.sha256(s.encode()).digest()).decode() + "'"
        for s in re.findall(r"<script>(.*?)</script>", html, re.S)
    )
    return {
        "Content-Security-Policy": f"default-src 'none'; script-src 'self' {hashes}; "
        "style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; "
        "frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "X-Frame-Options": "DENY",
    }
