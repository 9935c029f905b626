"""GET /v1/models and /v1/models/{model} through the official openai SDK, and the /docs and
/redoc pages working offline: every script, style and icon they load is served by chatq
itself."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from html.parser import HTMLParser
from typing import cast

import httpx
import openai
import pytest
from openai import OpenAI

from tests.acceptance.conftest import BACKENDS
from tests.harness import ChatqServer


@pytest.fixture
def oai(server: ChatqServer, new_key: Callable[[], str]) -> Iterator[OpenAI]:
    with OpenAI(
        api_key=new_key(),
        base_url=f"{server.base_url}/v1",
        max_retries=0,
        _strict_response_validation=True,
    ) as client:
        yield client


def test_the_openai_sdk_lists_the_routed_models(oai: OpenAI) -> None:
    models = list(oai.models.list())
    # The config's exact names in its order, each with its backend; the pattern sonar* is
    # routed but names no model, so it is not listed.
    expected = [
        (m, b["name"]) for b in BACKENDS for m in cast(list[str], b["models"]) if "*" not in m
    ]
    assert [(m.id, m.owned_by) for m in models] == expected
    assert {m.object for m in models} == {"model"}
    assert len({m.created for m in models}) == 1
    assert time.time() - 3600 < models[0].created <= time.time()


def test_the_openai_sdk_retrieves_a_served_model(oai: OpenAI) -> None:
    listed = {m.id: m for m in oai.models.list()}
    echo = oai.models.retrieve("echo")
    assert echo == listed["echo"]
    # Served through the pattern sonar*, so not listed, but retrievable by its name.
    sonar = oai.models.retrieve("sonar-pro")
    assert (sonar.id, sonar.owned_by, sonar.created) == ("sonar-pro", "fake", echo.created)
    # A name with a slash, as vLLM serves them (the SDK sends it as %2F).
    assert oai.models.retrieve("sonar/deep-research").id == "sonar/deep-research"
    with pytest.raises(openai.NotFoundError) as missing:
        oai.models.retrieve("no-such-model")
    assert missing.value.status_code == 404
    error = cast(dict[str, str], missing.value.body)  # the SDK keeps the body's "error"
    assert error["type"] == "invalid_model"
    assert "no-such-model" in error["message"] and "echo" in error["message"]


def test_listing_models_needs_a_key(server: ChatqServer) -> None:
    with (
        OpenAI(api_key="cq-not-a-key", base_url=f"{server.base_url}/v1", max_retries=0) as bad,
        pytest.raises(openai.AuthenticationError) as refused,
    ):
        bad.models.list()
    assert refused.value.status_code == 401
    with httpx.Client(base_url=server.base_url) as anonymous:
        for path in ("/v1/models", "/v1/models/echo"):
            missing = anonymous.get(path)
            assert missing.status_code == 401
            assert missing.json()["error"]["type"] == "authentication_error"


def test_the_model_list_is_in_the_openapi_document(server: ChatqServer) -> None:
    spec = httpx.get(f"{server.base_url}/openapi.json").json()
    operation = spec["paths"]["/v1/models"]["get"]
    assert operation["security"] == [{"HTTPBearer": []}]
    ok = operation["responses"]["200"]["content"]["application/json"]["schema"]
    assert ok["$ref"] == "#/components/schemas/ListModelsResponse"
    assert "401" in operation["responses"]
    model = spec["components"]["schemas"]["Model"]
    assert set(model["required"]) >= {"id", "created", "owned_by"}


class _Assets(HTMLParser):
    """The URLs a page loads: scripts, stylesheets and icons."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "script" and found.get("src"):
            self.urls.append(str(found["src"]))
        if tag == "link" and found.get("href"):
            self.urls.append(str(found["href"]))


CONTENT_TYPES = {
    ".js": ("text/javascript", "application/javascript"),
    ".css": ("text/css",),
    ".png": ("image/png",),
}


@pytest.mark.parametrize(("page", "expected"), [("/docs", 3), ("/redoc", 2)])
def test_the_docs_pages_load_only_from_chatq(server: ChatqServer, page: str, expected: int) -> None:
    with httpx.Client(base_url=server.base_url) as client:
        html = client.get(page)
        assert html.status_code == 200
        assert html.headers["content-type"].startswith("text/html")
        # No address of another host anywhere in the page: no CDN, no fonts, no validator.
        assert re.findall(r"https?://[^\s\"'<>]+", html.text) == []
        parser = _Assets()
        parser.feed(html.text)
        # /docs: its script, its stylesheet and its icon; /redoc: its script and its icon.
        assert len(parser.urls) == expected, parser.urls
        for url in parser.urls:
            assert url.startswith("/"), url
            asset = client.get(url)
            assert asset.status_code == 200, url
            suffix = url[url.rindex(".") :]
            assert asset.headers["content-type"].split(";")[0] in CONTENT_TYPES[suffix], url
            assert len(asset.content) > 1000, url
        # The document the page renders is chatq's own, on the same server.
        assert "'/openapi.json'" in html.text or '"/openapi.json"' in html.text
