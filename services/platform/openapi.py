"""The OpenAPI document every service serves: FastAPI's, plus the problem schema and the bearer scheme."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from services.platform.problems import FieldErrorOut, ProblemOut


def problem_components() -> dict[str, Any]:
    """The JSON Schemas of ProblemOut and FieldErrorOut, as components."""
    schema = ProblemOut.model_json_schema(ref_template="#/components/schemas/{model}")
    components: dict[str, Any] = schema.pop("$defs", {})
    components["ProblemOut"] = schema
    components.setdefault("FieldErrorOut", FieldErrorOut.model_json_schema())
    return components


def install_contract(app: FastAPI, extra: Callable[[], dict[str, Any]] | None = None) -> None:
    """Serve FastAPI's document with the problem components, the bearer scheme, and `extra()` components."""

    def build() -> dict[str, Any]:
        if app.openapi_schema is None:
            spec = get_openapi(title=app.title, version=app.version, summary=app.summary,
                               description=app.description, routes=app.routes)
            components = spec.setdefault("components", {}).setdefault("schemas", {})
            components.update(problem_components())
            if extra is not None:
                components.update(extra())
            spec["components"]["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
            spec["security"] = [{"bearer": []}]
            app.openapi_schema = spec
        return app.openapi_schema

    app.openapi = build  # type: ignore[method-assign]
