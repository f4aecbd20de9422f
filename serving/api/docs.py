"""The API's documentation pages, served from the package itself.

FastAPI's default `/docs` loads Swagger UI from a CDN, which leaves the page blank on a
government network without internet access. Here its files come from the installed
`swagger-ui-bundle-v2` package, under `/docs/assets`.
"""

from __future__ import annotations

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
        if app.openapi_schema is None:
            spec = default()  # FastAPI keeps it as app.openapi_schema: extended in place
            schemas = spec.setdefault("components", {}).setdefault("schemas", {})
            for model in bodies:
                schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
                schemas.update(schema.pop("$defs", {}))
                schemas[model.__name__] = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]

    app.mount(ASSETS, StaticFiles(directory=swagger_ui_path), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{app.title}: API",
            swagger_js_url=f"{ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS}/favicon-32x32.png",
        )
