"""GET /v1/models and /v1/models/{model}: the models this server routes, in OpenAI's shapes,
so that the openai SDK's client.models.list() and client.models.retrieve() work against
chatq."""

from __future__ import annotations

from fastapi import APIRouter, Path, Request

from chatq.api.auth import SECURED, Authenticated
from chatq.api.errors import ApiError, error_responses
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


@model_routes.get(
    "/v1/models/{model:path}",  # path: names like meta-llama/Llama-3 (vLLM) hold a slash
    summary="Retrieve Model",
    description="One model this server serves: a listed name, or a name a pattern in the "
    "config routes (such as sonar-pro for sonar*), with the backend that serves it; 404 "
    "for a model no backend serves.",
    operation_id="retrieve_model",
    response_model=Model,
    responses=error_responses(401, 404),
    openapi_extra=SECURED,
)
async def retrieve_model(
    caller: Authenticated, http: Request, model: str = Path(description="The model's name.")
) -> Model:
    backend = caller.ctx.models.route(model)
    if backend is None:
        served = ", ".join(caller.ctx.models.models())
        raise ApiError(404, f"no backend serves model {model!r}; served: {served}", "invalid_model")
    created: int = http.app.state.started_at
    return Model(id=model, created=created, owned_by=backend.name)
