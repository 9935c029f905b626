"""Requests as clients see them: the summary that lists show, the full object that GET
returns (Perplexity's AsyncApiChatCompletionsResponse) and webhooks carry."""

from __future__ import annotations

from typing import Any

from chatq.domain import Job, Status, Summary


def _ts(value: float | None) -> int | None:
    return None if value is None else int(value)


def summary(row: Summary) -> dict[str, Any]:
    return {
        "id": row.id,
        "model": row.model,
        "status": row.status.value,
        "created_at": int(row.created_at),
        "started_at": _ts(row.started_at),
        "completed_at": _ts(row.completed_at),
        "failed_at": _ts(row.failed_at),
        "metadata": row.metadata,
    }


def full_object(job: Job) -> dict[str, Any]:
    out = summary(job)
    out["response"] = job.response if job.status is Status.COMPLETED else None
    out["error_message"] = job.error_message if job.status is Status.FAILED else None
    return out
