"""GET /v1/models: the models this server routes, in OpenAI's list shape, so that the openai
SDK's client.models.list() works against chatq."""

from __future__ import annotations

from fastapi import APIRouter, Request

from chatq.api.auth import SECURED, Authenticated
from chatq.api.errors import error_responses
from chatq.api.models import ListModelsResponse, Model

model_routes = APIRouter(tags=["models"])


@model_routes.get(
    "/v1/models",
    summary="List Models",
    description="The model names this server routes, each with the backend that serves it. "
    "Models routed by a pattern in the config (such as sonar*) are served but not listed.",
    operation_id="list_models",
    response_model=ListModelsResponse,
    responses=error_responses(401),
    openapi_extra=SECURED,
)
async def list_models(caller: Authenticated, http: Request) -> ListModelsResponse:
    created: int = http.app.state.started_at
    return ListModelsResponse(
        data=[
            Model(id=name, created=created, owned_by=backend)
            for name, backend in caller.ctx.models.named().items()
        ]
    )
