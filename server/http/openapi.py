"""The OpenAPI 3.1 document of the REST API, generated from the endpoint list and schemas."""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web
from pydantic import BaseModel

from server.broadcast.http import OPENAPI_PATHS as LIVE_PATHS
from server.http import api, precheck, recordings, session_records, suggestions
from server.http.schemas import ErrorBody
from server.rooms.payloads import CallInAsk, GalleryPost

ENDPOINTS = (
    *api.ENDPOINTS,
    *recordings.ENDPOINTS,
    *session_records.ENDPOINTS,
    *precheck.ENDPOINTS,
    *suggestions.ENDPOINTS,
)

_ERRORS = {
    "400": "Malformed JSON",
    "401": "Missing or invalid API key",
    "404": "No such room or recording",
    "409": "Conflicts with the current state (id taken, identity invited with another role "
    "or venue, session ended...)",
    "413": "Body too large",
    "422": "Body does not match the schema",
    "429": "Too many wrong API keys from this address (Retry-After says when to try again), "
    "or too many link checks",
    "503": "Room state (Redis) is unreachable for now; Retry-After says when to try again",
}
#: Errors only calls that take credentials can get.
_ADMIN_ERRORS = {"401", "429"}


def _ref(model: type[BaseModel], components: dict[str, Any]) -> dict[str, str]:
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    for name, definition in schema.pop("$defs", {}).items():
        components[name] = definition
    components[model.__name__] = schema
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def build_openapi() -> dict[str, Any]:
    """The whole API description (paths, schemas, security)."""
    components: dict[str, Any] = {}
    error_ref = _ref(ErrorBody, components)
    paths: dict[str, dict[str, Any]] = {}
    for endpoint in ENDPOINTS:
        operation: dict[str, Any] = {"summary": endpoint.summary, "responses": {}}
        names = re.findall(r"{(\w+)}", endpoint.path)
        if names:
            operation["parameters"] = [
                {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
                for name in names
            ]
        query = session_records.QUERY_PARAMETERS.get(endpoint.path)
        if query:
            operation.setdefault("parameters", []).extend(query)
        if endpoint.body is not None:
            operation["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": _ref(endpoint.body, components)}},
            }
        success: dict[str, Any] = {"description": "Success"}
        if endpoint.response is not None:
            success["content"] = {
                "application/json": {"schema": _ref(endpoint.response, components)}
            }
        operation["responses"][str(endpoint.status)] = success
        for other in endpoint.other_statuses:
            operation["responses"][str(other)] = {**success, "description": "Refused (body: why)"}
        for status, text in _ERRORS.items():
            limited = status == "429" and getattr(endpoint, "rate_limited", False)
            if status in _ADMIN_ERRORS and not endpoint.admin and not limited:
                continue
            if status in operation["responses"]:
                continue  # the endpoint's own meaning of it (readiness: not ready)
            operation["responses"][status] = {
                "description": text,
                "content": {"application/json": {"schema": error_ref}},
            }
        if endpoint.admin:
            operation["security"] = [{"apiKey": []}]
        paths.setdefault(endpoint.path, {})[endpoint.method.lower()] = operation
    # The live broadcast (server/broadcast/http.py).
    paths.update(LIVE_PATHS)
    _ref(GalleryPost, components)
    _ref(CallInAsk, components)
    paths["/api/openapi.json"] = {
        "get": {"summary": "This document", "responses": {"200": {"description": "OpenAPI 3.1"}}}
    }
    paths["/metrics"] = {
        "get": {
            "summary": "This node's metrics (the metrics token or the API key)",
            "security": [{"apiKey": []}],
            "responses": {
                "200": {
                    "description": "Prometheus text exposition format",
                    "content": {"text/plain": {"schema": {"type": "string"}}},
                },
                **{
                    status: {
                        "description": _ERRORS[status],
                        "content": {"application/json": {"schema": error_ref}},
                    }
                    for status in ("401", "429")
                    if status in _ERRORS
                },
            },
        }
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "Yitang (议堂) API", "version": "0.1.0"},
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {"apiKey": {"type": "http", "scheme": "bearer"}},
        },
    }


async def openapi_handler(request: web.Request) -> web.Response:
    """Serve the OpenAPI document."""
    return web.json_response(build_openapi())
