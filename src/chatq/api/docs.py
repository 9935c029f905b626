"""The API's documentation pages, /docs (Swagger UI) and /redoc, working offline: their
scripts and styles are the copies the fastapi-offline package ships, served by chatq itself
under ASSETS, never fetched from a CDN."""

from __future__ import annotations

from importlib.resources import files

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

ASSETS = "/docs-assets"
_STATIC = files("fastapi_offline") / "static"


def install_docs(app: FastAPI) -> None:
    """Serve /docs, /redoc and their assets on app (made with docs_url=None, redoc_url=None)."""
    app.mount(ASSETS, StaticFiles(directory=str(_STATIC)), name="docs-assets")
    title = app.title

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui(http: Request) -> HTMLResponse:
        root = _root(http)
        return get_swagger_ui_html(
            openapi_url=f"{root}{app.openapi_url}",
            title=f"{title} - Swagger UI",
            swagger_js_url=f"{root}{ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{root}{ASSETS}/favicon.png",
            # Swagger UI would otherwise send the document to validator.swagger.io.
            swagger_ui_parameters={"validatorUrl": None},
        )

    @app.get("/redoc", include_in_schema=False)
    async def redoc(http: Request) -> HTMLResponse:
        root = _root(http)
        return get_redoc_html(
            openapi_url=f"{root}{app.openapi_url}",
            title=f"{title} - ReDoc",
            redoc_js_url=f"{root}{ASSETS}/redoc.standalone.js",
            redoc_favicon_url=f"{root}{ASSETS}/favicon.png",
            with_google_fonts=False,
        )


def _root(http: Request) -> str:
    """The prefix a proxy serves chatq under (uvicorn's --root-path), if any."""
    root: str = http.scope.get("root_path", "")
    return root.rstrip("/")
