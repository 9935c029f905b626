"""The ceiling for chatq's HTTP benchmarks: a bare FastAPI app on the same server settings
that parses the same request body and answers a same-sized JSON, storing nothing.

Run: python bench/ceiling.py PORT
"""

from __future__ import annotations

import sys
import time
import uuid

import uvicorn
from fastapi import FastAPI
from fastapi.responses import JSONResponse

from chatq.api.models import AsyncApiChatCompletionsRequest

app = FastAPI()


def _object(model: str) -> dict[str, object]:
    return {
        "id": str(uuid.uuid4()),
        "model": model,
        "status": "CREATED",
        "created_at": int(time.time()),
        "started_at": None,
        "completed_at": None,
        "failed_at": None,
        "response": None,
        "error_message": None,
    }


@app.post("/async/chat/completions")
async def create(body: AsyncApiChatCompletionsRequest) -> JSONResponse:
    return JSONResponse(_object(body.request.model))


@app.get("/async/chat/completions/{api_request}")
async def get(api_request: str) -> JSONResponse:
    return JSONResponse(_object("echo"))


@app.get("/async/chat/completions")
async def list_requests(limit: int = 20) -> JSONResponse:
    summaries = []
    for _ in range(limit):
        summary = _object("echo")
        del summary["response"], summary["error_message"]
        summaries.append(summary)
    return JSONResponse({"requests": summaries, "next_token": "A" * 27})


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=False, log_level="warning")
