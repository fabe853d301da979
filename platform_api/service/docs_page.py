"""The OpenAPI docs page (``/docs``), served whole by the service: Swagger UI's script and style
come from the ``fastapi-swagger`` package (Swagger UI 5, which renders FastAPI's OpenAPI 3.1), not
from a CDN. FastAPI's default page loads them from cdn.jsdelivr.net and stays blank behind a
firewall or offline, where the HTTP data API guide deploys the service."""

from __future__ import annotations

from importlib import resources

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

DOCS_URL = "/docs"
OAUTH2_REDIRECT_URL = f"{DOCS_URL}/oauth2-redirect"
STATIC_URL = f"{DOCS_URL}/static"


def is_docs_path(path: str) -> bool:
    """The docs page, its OAuth2 redirect and its static files (open without a token)."""
    return path in (DOCS_URL, OAUTH2_REDIRECT_URL) or path.startswith(f"{STATIC_URL}/")


def add_docs_page(app: FastAPI) -> None:
    """Serve ``/docs`` and Swagger UI's files from this process (create ``app`` with ``docs_url=None``)."""
    files = resources.files("fastapi_swagger") / "resources"
    app.mount(STATIC_URL, StaticFiles(directory=str(files)), name="docs-static")

    @app.get(DOCS_URL, include_in_schema=False)
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url,
            title=f"{app.title} - API docs",
            swagger_js_url=f"{STATIC_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{STATIC_URL}/swagger-ui.css",
            swagger_favicon_url=f"{STATIC_URL}/favicon-32x32.png",
            oauth2_redirect_url=OAUTH2_REDIRECT_URL,
        )

    @app.get(OAUTH2_REDIRECT_URL, include_in_schema=False)
    def oauth2_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()
