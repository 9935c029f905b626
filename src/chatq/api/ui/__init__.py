"""The dashboard at /ui: pages rendered from Jinja2 templates, and small static scripts that
call the JSON API with the key the person signed in with (kept in the tab's sessionStorage,
sent as a bearer header). The pages themselves hold no data and need no key."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from importlib.resources import files

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

import chatq

PREFIX = "/ui"
_HERE = files("chatq.api.ui")
_templates = Jinja2Templates(directory=str(_HERE / "templates"))

# Scripts only from chatq itself, and no inline script, style or event handler: a stored
# string that reached the page as markup still could not run.
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)
HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}

# Each page: its path under PREFIX, its template (and script of the same name), its title.
PAGES = {
    "": ("list", "Requests"),
    "/signin": ("signin", "Sign in"),
    "/new": ("new", "New request"),
    "/usage": ("usage", "Usage"),
    "/admin": ("admin", "Admin"),
}

ui_routes = APIRouter(prefix=PREFIX, include_in_schema=False)


def install_ui(app: FastAPI) -> None:
    """Serve the dashboard's pages and static files on app."""
    app.mount(f"{PREFIX}/static", StaticFiles(directory=str(_HERE / "static")), name="ui-static")
    app.include_router(ui_routes)


def _page(http: Request, name: str, title: str, **data: str) -> HTMLResponse:
    root = http.scope.get("root_path", "").rstrip("/")
    context = {
        "root": root,
        "page": name,
        "title": title,
        "data": data,
        "version": chatq.__version__,
    }
    return _templates.TemplateResponse(http, f"{name}.html", context, headers=HEADERS)


def _simple_page(name: str, title: str) -> Callable[[Request], Awaitable[HTMLResponse]]:
    async def show(http: Request) -> HTMLResponse:
        return _page(http, name, title)

    return show


for _path, (_name, _title) in PAGES.items():
    ui_routes.add_api_route(
        _path, _simple_page(_name, _title), methods=["GET"], response_class=HTMLResponse
    )


@ui_routes.get("/requests/{api_request}", response_class=HTMLResponse)
async def request_page(api_request: str, http: Request) -> HTMLResponse:
    return _page(http, "request", "Request", request_id=api_request)
