"""RFC 9457 problem details: one exception type, the handlers that render it, and the last resort.

Every error a service answers is `application/problem+json`: its own `Problem`s, FastAPI's
validation errors, routing errors, and (through `LastResort`) any exception nobody expected,
which is logged with an incident id that the 500 body repeats.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"
PROBLEM_BASE = "https://accordwatch.dev/problems/"
TITLES = {
    400: "Bad request", 401: "Unauthorized", 403: "Forbidden", 404: "Not found", 405: "Method not allowed",
    409: "Conflict", 413: "Request body too large", 415: "Unsupported media type", 422: "Invalid request",
    500: "Internal error", 503: "Service unavailable",
}


class Problem(StarletteHTTPException):
    """An error answered as `application/problem+json`.

    It is an `HTTPException`, so FastAPI passes it through unchanged when it is raised while
    the request body is read (the body limit raises it from inside `receive`).
    """

    def __init__(
        self,
        status: int,
        title: str,
        detail: str | None = None,
        *,
        kind: str | None = None,
        headers: Mapping[str, str] | None = None,
        **extensions: Any,
    ) -> None:
        super().__init__(status, detail or title, dict(headers or {}))
        self.status = status
        self.title = title
        self.problem_detail = detail
        self.kind = kind
        self.extensions = extensions

    def body(self, instance: str | None = None) -> dict[str, Any]:
        """The problem document."""
        doc: dict[str, Any] = {
            "type": PROBLEM_BASE + self.kind if self.kind else "about:blank",
            "title": self.title,
            "status": self.status,
        }
        if self.problem_detail:
            doc["detail"] = self.problem_detail
        if instance:
            doc["instance"] = instance
        doc.update(self.extensions)
        return doc


def invalid_parameter(field: str, reason: str) -> Problem:
    """A 422 naming one request field (`query.as_of`, `path.case_id`, `body.url`)."""
    return Problem(422, "Invalid request", f"{field}: {reason}", kind="invalid-request",
                   errors=[{"field": field, "reason": reason}])


def problem_response(problem: Problem, instance: str | None = None) -> Response:
    """Render a problem as a response."""
    return Response(
        orjson.dumps(problem.body(instance)),
        status_code=problem.status,
        media_type=PROBLEM_JSON,
        headers=problem.headers,
    )


def _location(loc: tuple[Any, ...]) -> str:
    where, *rest = loc if loc else ("body",)
    path = ".".join(str(p) for p in rest)
    return f"{where}.{path}" if path else str(where)


def install_problem_handlers(app: FastAPI) -> None:
    """Answer every error of the app, including routing and validation, as problem+json."""

    async def on_problem(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, Problem)
        return problem_response(exc, request.url.path)

    async def on_validation(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        errors = [
            {"field": _location(tuple(e["loc"])), "reason": str(e["msg"]).removeprefix("Value error, ")}
            for e in exc.errors()
        ]
        return problem_response(
            Problem(422, "Invalid request", errors[0]["field"] + ": " + errors[0]["reason"],
                    kind="invalid-request", errors=errors),
            request.url.path,
        )

    async def on_http(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        title = TITLES.get(exc.status_code, "HTTP error")
        return problem_response(
            Problem(exc.status_code, title, str(exc.detail), headers=exc.headers), request.url.path
        )

    app.add_exception_handler(Problem, on_problem)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)


class LastResort:
    """Pure ASGI middleware: an exception nobody handled becomes a problem+json 500 with an incident id.

    The id is logged with the traceback, so an operator finds the cause from what a client quotes.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def watch(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, watch)
        except Exception as exc:
            if started:
                raise  # the status is out; nothing better can be said than a broken response
            if isinstance(exc, Problem):
                await problem_response(exc, scope.get("path"))(scope, receive, send)
                return
            incident = uuid.uuid4().hex
            log.exception("incident %s: unexpected error answering %s %s", incident, scope.get("method"),
                          scope.get("path"))
            problem = Problem(500, "Internal error", f"an unexpected error; quote incident {incident}",
                              kind="internal-error", incident=incident)
            await problem_response(problem, scope.get("path"))(scope, receive, send)


class FieldErrorOut(BaseModel):
    """One bad field: where it is and why."""

    model_config = ConfigDict(extra="allow")

    field: str | None = Field(default=None, description="Where: `query.as_of`, `body.url`, `data.count`, ...")
    reason: str
    index: int | None = Field(default=None, description="The event's position in a batch.")


class ProblemOut(BaseModel):
    """An RFC 9457 problem document (extension members vary by `type`)."""

    model_config = ConfigDict(extra="allow")

    type: str = Field(description="A URI naming the kind of problem, or about:blank.")
    title: str
    status: int
    detail: str | None = None
    instance: str | None = None
    errors: list[FieldErrorOut] | None = Field(default=None, description="Every bad field, when fields are at fault.")
    incident: str | None = Field(default=None, description="For a 500: the id under which the error was logged.")


PROBLEM_TEXTS: dict[int, str] = {
    400: "Malformed request",
    401: "No or unknown API key",
    403: "The API key lacks the scope",
    404: "Not found",
    409: "Conflict with the resource's state",
    413: "Too large",
    415: "Unsupported media type",
    422: "Invalid input; `errors` names each field",
    500: "Unexpected error; `incident` is in the log",
    503: "A dependency is unavailable; retry later",
}
PROBLEM_REF = {"$ref": "#/components/schemas/ProblemOut"}


def problem_responses(*statuses: int, **descriptions: str) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for problem statuses, each an `application/problem+json` ProblemOut.

    `descriptions` overrides a text by status (`s404="Unknown agreement"`). 500 is always listed.
    """
    wanted = sorted({*statuses, 500})
    return {
        status: {
            "description": descriptions.get(f"s{status}", PROBLEM_TEXTS.get(status, "Problem")),
            "content": {PROBLEM_JSON: {"schema": PROBLEM_REF}},
        }
        for status in wanted
    }


AUTH_PROBLEMS = (401, 403)
PROBLEM_RESPONSES = problem_responses(400, 401, 403, 422)
