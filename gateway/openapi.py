"""GET /openapi.json: the HTTP contract as OpenAPI 3, generated from the marshmallow schemas;
GET /docs: the same, readable, in Swagger UI (served from the swagger-ui-bundle package, no CDN)."""

from __future__ import annotations

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from flask import Blueprint, Response, abort, send_from_directory
from swagger_ui_bundle import swagger_ui_path

from gateway import schemas

bp = Blueprint("openapi", __name__)

PROBLEM = {"application/problem+json": {"schema": "Problem"}}
SIGNATURE_HEADERS = [
    {
        "name": "webhook-id",
        "in": "header",
        "required": True,
        "schema": {"type": "string"},
        "description": "Unique id of this request (Standard Webhooks).",
    },
    {
        "name": "webhook-timestamp",
        "in": "header",
        "required": True,
        "schema": {"type": "integer"},
        "description": "Unix seconds; accepted within ±5 minutes.",
    },
    {
        "name": "webhook-signature",
        "in": "header",
        "required": True,
        "schema": {"type": "string"},
        "description": "Space-separated `v1,<base64 HMAC-SHA256>` of `{id}.{timestamp}.{body}`.",
    },
]
CLIENT_ID = {
    "name": "client_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": schemas.CLIENT_ID},
}
TASK_ID = {
    "name": "task_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": schemas.TASK_ID},
}


def _problems(*codes: int) -> dict:
    return {str(code): {"description": _PROBLEM_TEXT[code], "content": PROBLEM} for code in codes}


_PROBLEM_TEXT = {
    400: "Malformed JSON, a body nested too deeply, or (lists) a cursor this API did not return",
    401: "Missing, invalid or expired signature or token, or unknown client",
    404: "No such task",
    409: "The task-id was used with different content",
    413: "Body over the limit",
    415: "Not JSON",
    422: "Invalid task or query; `errors` names the fields",
    429: (
        "Too many failed authentications from this source or for this client, or (submissions) the "
        "client's share of undelivered callbacks is full or its rate limit reached; see Retry-After"
    ),
    503: "Storage or broker unavailable, or (submissions) taskgate too far behind; see Retry-After",
}


def build_spec() -> dict:
    spec = APISpec(
        title="taskgate",
        version="0.1.0",
        openapi_version="3.0.3",
        plugins=[MarshmallowPlugin()],
        info={"description": "Signed task webhooks in, signed result callbacks out."},
    )
    spec.components.security_scheme("bearer", {"type": "http", "scheme": "bearer"})
    for name, schema in schemas.PAYLOAD_SCHEMAS.items():
        spec.components.schema(_payload_name(name), schema=schema)
    for schema in (
        schemas.TaskSubmission,
        schemas.Accepted,
        schemas.Task,
        schemas.TaskPage,
        schemas.DeliveryDetail,
        schemas.Timeline,
        schemas.Problem,
    ):
        spec.components.schema(schema.__name__, schema=schema)
    spec.path(path="/v1/clients/{client_id}/tasks", operations=_task_collection())
    spec.path(
        path="/v1/clients/{client_id}/tasks/{task_id}",
        operations={
            "get": {
                "summary": "Read one task with its results and deliveries",
                "security": [{"bearer": []}],
                "parameters": [CLIENT_ID, TASK_ID],
                "responses": {"200": _json("The task", "Task"), **_problems(401, 404, 429, 503)},
            }
        },
    )
    spec.path(
        path="/v1/clients/{client_id}/tasks/{task_id}/timeline",
        operations={
            "get": {
                "summary": "What happened to one task, in time order (steps, results, callback attempts)",
                "security": [{"bearer": []}],
                "parameters": [CLIENT_ID, TASK_ID],
                "responses": {
                    "200": _json("The task's timeline", "Timeline"),
                    **_problems(401, 404, 429, 503),
                },
            }
        },
    )
    spec.path(
        path="/v1/clients/{client_id}/deliveries/{result_id}",
        operations={
            "get": {
                "summary": "Read one result's delivery with every attempt",
                "security": [{"bearer": []}],
                "parameters": [
                    CLIENT_ID,
                    {
                        "name": "result_id",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string", "format": "uuid"},
                    },
                ],
                "responses": {
                    "200": _json("The delivery", "DeliveryDetail"),
                    **_problems(401, 404, 429, 503),
                },
            }
        },
    )
    spec.path(
        path="/healthz", operations={"get": {"summary": "Alive", "responses": {"200": {"description": "ok"}}}}
    )
    spec.path(
        path="/readyz",
        operations={
            "get": {
                "summary": "Database and broker reachable",
                "responses": {"200": {"description": "ready"}, "503": {"description": "not ready"}},
            }
        },
    )
    spec.path(
        path="/metrics",
        operations={
            "get": {"summary": "Prometheus metrics", "responses": {"200": {"description": "text format"}}}
        },
    )
    document = spec.to_dict()
    submission = document["components"]["schemas"]["TaskSubmission"]
    submission["properties"]["payload"] = {
        "description": "Depends on `type`: "
        + ", ".join(f"`{name}` → {_payload_name(name)}" for name in schemas.PAYLOAD_SCHEMAS),
        "oneOf": [
            {"$ref": f"#/components/schemas/{_payload_name(name)}"} for name in schemas.PAYLOAD_SCHEMAS
        ],
    }
    return document


def _task_collection() -> dict:
    return {
        "post": {
            "summary": "Submit a task (signed per Standard Webhooks)",
            "parameters": [CLIENT_ID, *SIGNATURE_HEADERS],
            "requestBody": {"required": True, "content": {"application/json": {"schema": "TaskSubmission"}}},
            "responses": {
                "202": {
                    **_json("Accepted; task and events committed", "Accepted"),
                    "headers": {"Location": {"schema": {"type": "string"}}},
                },
                "200": _json("The same task again: its current representation", "Task"),
                **_problems(400, 401, 409, 413, 415, 422, 429, 503),
            },
        },
        "get": {
            "summary": "List the client's tasks, oldest first",
            "security": [{"bearer": []}],
            "parameters": [
                CLIENT_ID,
                {
                    "name": "status",
                    "in": "query",
                    "schema": {
                        "type": "string",
                        "enum": ["accepted", "waiting", "succeeded", "rejected", "failed"],
                    },
                },
                {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 100}},
                {"name": "cursor", "in": "query", "schema": {"type": "string"}},
            ],
            "responses": {"200": _json("A page of tasks", "TaskPage"), **_problems(400, 401, 422, 429, 503)},
        },
    }


def _json(description: str, schema: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _payload_name(task_type: str) -> str:
    return "".join(part.capitalize() for part in task_type.split(".")) + "Payload"


@bp.get("/openapi.json")
def openapi_json():
    return build_spec()


DOCS_PAGE = """<!DOCTYPE html>
<html lang="en">
  <head>
    <meta charset="UTF-8">
    <title>taskgate API</title>
    <link rel="stylesheet" href="/docs/static/swagger-ui.css">
  </head>
  <body>
    <div id="swagger-ui"></div>
    <script src="/docs/static/swagger-ui-bundle.js"></script>
    <script src="/docs/init.js"></script>
  </body>
</html>
"""

DOCS_INIT = """window.onload = () => {
  window.ui = SwaggerUIBundle({url: "/openapi.json", dom_id: "#swagger-ui", deepLinking: true});
};
"""

# Only what the page loads: nothing else of the bundle's directory is reachable.
DOCS_ASSETS = frozenset({"swagger-ui.css", "swagger-ui-bundle.js"})


@bp.get("/docs")
def docs():
    return Response(DOCS_PAGE, mimetype="text/html", headers=_DOCS_HEADERS)


@bp.get("/docs/init.js")
def docs_init():
    return Response(DOCS_INIT, mimetype="text/javascript", headers=_DOCS_HEADERS)


@bp.get("/docs/static/<name>")
def docs_asset(name: str):
    if name not in DOCS_ASSETS:
        abort(404)
    response = send_from_directory(str(swagger_ui_path), name, max_age=86400)
    response.headers.update(_DOCS_HEADERS)
    return response


_DOCS_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'",
    "X-Content-Type-Options": "nosniff",
}
