"""The OpenAPI 3.1 document of the HTTP API, kept beside the routes (a unit test checks they agree)."""

from __future__ import annotations

import copy
from typing import Any

from flowpods import __version__

_ERROR = {"$ref": "#/components/responses/Error"}
_NS = {"name": "namespace", "in": "path", "required": True, "description": "Kubernetes namespace",
       "schema": {"type": "string"}}  # fmt: skip
_FLOW = {"name": "flowId", "in": "path", "required": True, "description": "Flow resource name (metadata.name)",
         "schema": {"type": "string"}}  # fmt: skip
_NAME = {"name": "name", "in": "path", "required": True, "description": "Execution name",
         "schema": {"type": "string"}}  # fmt: skip
_WAIT = [
    {"name": "wait", "in": "query", "description": "wait for a terminal state before answering",
     "schema": {"type": "boolean", "default": False}},
    {"name": "timeout", "in": "query", "description": "seconds to wait (default 60, at most 300)",
     "schema": {"type": "number", "exclusiveMinimum": 0, "maximum": 300}},
]  # fmt: skip
_TRACEPARENT = {"name": "traceparent", "in": "header", "required": False,
                "description": "W3C trace context: the execution's trace continues the caller's",
                "schema": {"type": "string"}}  # fmt: skip
_CREATED = {
    "description": "the Execution was created (with ?wait=true: as it is when it ended or the wait timed out)",
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Execution"}}},
}
_ATTEMPT = [
    {"name": "taskRunId", "in": "query", "required": True, "schema": {"type": "string"}},
    {"name": "attempt", "in": "query", "description": "the attempt number (default: the latest)",
     "schema": {"type": "integer"}},
]  # fmt: skip
_SECURED: list[dict[str, list[str]]] = [{"bearer": []}]
_TASKRUN = {"name": "taskRunId", "in": "query", "required": False, "schema": {"type": "string"},
            "description": "the top-level task run to replay from (default: the start)"}  # fmt: skip


def _control_responses(accepted: str, bad_request: bool = False) -> dict[str, Any]:
    responses: dict[str, Any] = {
        "202": {"description": accepted,
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Execution"}}}},
        "401": _ERROR, "403": _ERROR, "404": _ERROR,
        "409": _ERROR,
    }  # fmt: skip
    if bad_request:
        responses["400"] = _ERROR
    return responses


_DOCUMENT: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "flowpods API",
        "version": __version__,
        "description": "Start, read, follow and kill flow executions, and start flows from webhooks. Every "
        "request is traced; send `traceparent` to make the execution's trace part of yours. Bearer tokens are "
        "Kubernetes tokens, checked with TokenReview and authorised with SubjectAccessReview on "
        "executions.flowpods.io (create: start, kill and replay; get: read and follow; update: resume, restart "
        "and labels).",
    },
    "paths": {
        "/api/v1/executions/{namespace}/{flowId}": {
            "post": {
                "summary": "Start an execution of a flow",
                "operationId": "startExecution",
                "security": _SECURED,
                "parameters": [_NS, _FLOW, *_WAIT, _TRACEPARENT],
                "requestBody": {
                    "required": False,
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/StartRequest"}},
                        "multipart/form-data": {"schema": {"type": "object", "additionalProperties": True}},
                        "application/x-www-form-urlencoded": {
                            "schema": {"type": "object", "additionalProperties": {"type": "string"}}
                        },
                    },
                },
                "responses": {
                    "201": _CREATED,
                    "400": _ERROR,
                    "401": _ERROR,
                    "403": _ERROR,
                    "404": _ERROR,
                    "409": _ERROR,
                    "413": _ERROR,
                },
            }
        },
        "/api/v1/executions/{namespace}/{name}": {
            "get": {
                "summary": "Read an execution",
                "operationId": "getExecution",
                "security": _SECURED,
                "parameters": [_NS, _NAME],
                "responses": {
                    "200": {
                        "description": "the execution",
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Execution"}}},
                    },
                    "401": _ERROR,
                    "403": _ERROR,
                    "404": _ERROR,
                },
            }
        },
        "/api/v1/executions/{namespace}/{name}/follow": {
            "get": {
                "summary": "Follow an execution until it ends (server-sent events)",
                "description": "One `status` event (data: the Execution JSON) per change of the state or of a "
                "task run; the stream ends after the event with a terminal state (or a `deleted` event).",
                "operationId": "followExecution",
                "security": _SECURED,
                "parameters": [_NS, _NAME],
                "responses": {
                    "200": {"description": "the event stream", "content": {"text/event-stream": {}}},
                    "401": _ERROR,
                    "403": _ERROR,
                    "404": _ERROR,
                },
            }
        },
        "/api/v1/executions/{namespace}/{name}/kill": {
            "delete": {
                "summary": "Kill a running execution",
                "operationId": "killExecution",
                "security": _SECURED,
                "parameters": [_NS, _NAME],
                "responses": {
                    "202": {
                        "description": "the kill was requested",
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Execution"}}},
                    },
                    "401": _ERROR,
                    "403": _ERROR,
                    "404": _ERROR,
                    "409": _ERROR,
                },
            }
        },
        "/api/v1/executions/{namespace}/{name}/resume": {
            "post": {
                "summary": "Resume a PAUSED execution, with the Pause's onResume inputs",
                "operationId": "resumeExecution",
                "security": _SECURED,
                "parameters": [_NS, _NAME],
                "requestBody": {
                    "required": False,
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/ResumeRequest"}},
                        "multipart/form-data": {"schema": {"type": "object", "additionalProperties": True}},
                        "application/x-www-form-urlencoded": {
                            "schema": {"type": "object", "additionalProperties": {"type": "string"}}
                        },
                    },
                },
                "responses": _control_responses("the resume was requested", bad_request=True),
            }
        },
        "/api/v1/executions/{namespace}/{name}/restart": {
            "post": {
                "summary": "Restart a FAILED, KILLED or WARNING execution from its failed task runs",
                "operationId": "restartExecution",
                "security": _SECURED,
                "parameters": [_NS, _NAME],
                "responses": _control_responses("the restart was requested"),
            }
        },
        "/api/v1/executions/{namespace}/{name}/replay": {
            "post": {
                "summary": "Replay an ended execution as a new one, from a chosen top-level task run",
                "operationId": "replayExecution",
                "security": _SECURED,
                "parameters": [
                    _NS,
                    _NAME,
                    {
                        "name": "taskRunId",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "string"},
                        "description": "the task run to replay from (default: the start)",
                    },
                    *_WAIT,
                ],
                "responses": {
                    "201": _CREATED,
                    "400": _ERROR,
                    "401": _ERROR,
                    "403": _ERROR,
                    "404": _ERROR,
                    "409": _ERROR,
                },
            }
        },
        "/api/v1/executions/{namespace}/{name}/labels": {
            "post": {
                "summary": "Replace the execution's labels (its system. labels are kept)",
                "operationId": "setExecutionLabels",
                "security": _SECURED,
                "parameters": [_NS, _NAME],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "array",
                                "items": {
                                    "type": "object",
                                    "required": ["key", "value"],
                                    "additionalProperties": False,
                                    "properties": {"key": {"type": "string"}, "value": {"type": "string"}},
                                },
                            }
                        }
                    },
                },
                "responses": {
                    "200": {
                        "description": "the labels were set",
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Execution"}}},
                    },
                    "400": _ERROR,
                    "401": _ERROR,
                    "403": _ERROR,
                    "404": _ERROR,
                },
            }
        },
        "/api/v1/executions/webhook/{namespace}/{flowId}/{key}": {
            "parameters": [
                _NS,
                _FLOW,
                {
                    "name": "key",
                    "in": "path",
                    "required": True,
                    "description": "the Webhook trigger's key",
                    "schema": {"type": "string"},
                },
                *_WAIT,
                _TRACEPARENT,
            ],
            "get": {
                "summary": "Start a flow through its Webhook trigger",
                "description": "The query reaches the flow as `trigger.parameters`, the headers (without "
                "Authorization and cookies) as `trigger.headers`. A wrong key or an unknown flow is a 404.",
                "operationId": "webhookGet",
                "responses": {"201": _CREATED, "400": _ERROR, "404": _ERROR, "413": _ERROR},
            },
            "post": {
                "summary": "Start a flow through its Webhook trigger, with a body",
                "description": "The body reaches the flow as `trigger.body` (parsed when it is JSON, else text).",
                "operationId": "webhookPost",
                "requestBody": {"required": False, "content": {"*/*": {}}},
                "responses": {"201": _CREATED, "400": _ERROR, "404": _ERROR, "413": _ERROR},
            },
        },
        "/api/v1/executions/{namespace}": {
            "get": {
                "summary": "List the executions of a namespace (the run view's list)",
                "operationId": "listExecutions",
                "security": _SECURED,
                "parameters": [_NS],
                "responses": {"200": {"description": "the executions, newest first"}, "401": _ERROR, "403": _ERROR},
            }
        },
        "/api/v1/executions/{namespace}/{name}/timeline": {
            "get": {
                "summary": "The execution with its task runs' timeline, critical path and each task's recent median",
                "operationId": "executionTimeline",
                "security": _SECURED,
                "parameters": [_NS, _NAME],
                "responses": {"200": {"description": "the timeline"}, "401": _ERROR, "403": _ERROR, "404": _ERROR},
            }
        },
        "/api/v1/executions/{namespace}/{name}/logs": {
            "get": {
                "summary": "The log of a task run's attempt, from its pod while the pod exists",
                "operationId": "executionLogs",
                "security": _SECURED,
                "parameters": [_NS, _NAME, *_ATTEMPT],
                "responses": {
                    "200": {"description": "the log, or why there is none"},
                    "401": _ERROR,
                    "403": _ERROR,
                    "404": _ERROR,
                },
            }
        },
        "/api/v1/executions/{namespace}/{name}/pending": {
            "get": {
                "summary": "Why an attempt's pod waits: its conditions, containers and Events",
                "operationId": "executionPending",
                "security": _SECURED,
                "parameters": [_NS, _NAME, *_ATTEMPT],
                "responses": {"200": {"description": "the pod's report"}, "401": _ERROR, "403": _ERROR, "404": _ERROR},
            }
        },
        "/api/v1/executions/{namespace}/{name}/compare/{other}": {
            "get": {
                "summary": "Two executions compared task by task (durations and states)",
                "operationId": "compareExecutions",
                "security": _SECURED,
                "parameters": [
                    _NS,
                    _NAME,
                    {"name": "other", "in": "path", "required": True, "schema": {"type": "string"}},
                ],
                "responses": {"200": {"description": "the tasks of both"}, "401": _ERROR, "403": _ERROR, "404": _ERROR},
            }
        },
        "/api/v1/access/{namespace}": {
            "get": {
                "summary": "Who the token is and which verbs RBAC allows them on executions in the namespace",
                "operationId": "access",
                "security": _SECURED,
                "parameters": [_NS],
                "responses": {"200": {"description": "user, may: {get, list, create, update}"}, "401": _ERROR},
            }
        },
        "/": {
            "get": {
                "summary": "Redirects to the run view",
                "operationId": "root",
                "responses": {"302": {"description": "to /ui/"}},
            }
        },
        "/ui/": {
            "get": {
                "summary": "The run view (web page)",
                "operationId": "runView",
                "responses": {"200": {"description": "HTML"}},
            }
        },
        "/ui/{file}": {
            "get": {
                "summary": "The run view's script and style sheet",
                "operationId": "runViewFile",
                "parameters": [{"name": "file", "in": "path", "required": True, "schema": {"type": "string"}}],
                "responses": {"200": {"description": "the file"}, "404": _ERROR},
            }
        },
        "/api/v1/openapi.json": {
            "get": {"summary": "This document", "operationId": "openapi", "responses": {"200": {"description": "OK"}}}
        },
        "/healthz": {
            "get": {"summary": "Liveness", "operationId": "healthz", "responses": {"200": {"description": "alive"}}}
        },
        "/readyz": {
            "get": {
                "summary": "Readiness: the Kubernetes API server answers",
                "operationId": "readyz",
                "responses": {"200": {"description": "ready"}, "503": _ERROR},
            }
        },
    },
    "components": {
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "description": "a Kubernetes token"}},
        "responses": {
            "Error": {
                "description": "what went wrong",
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
            }
        },
        "schemas": {
            "StartRequest": {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "inputs": {"type": "object", "description": "input values by input id"},
                    "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                },
            },
            "ResumeRequest": {
                "type": "object",
                "additionalProperties": False,
                "properties": {"inputs": {"type": "object", "description": "onResume input values by input id"}},
            },
            "Error": {
                "type": "object",
                "required": ["error"],
                "properties": {
                    "error": {
                        "type": "object",
                        "required": ["status", "message"],
                        "properties": {"status": {"type": "integer"}, "message": {"type": "string"}},
                    }
                },
            },
            "Execution": {
                "type": "object",
                "required": ["name", "namespace", "flowId", "state", "links"],
                "properties": {
                    "name": {"type": "string"},
                    "namespace": {"type": "string"},
                    "flowId": {"type": "string", "description": "the Flow resource's name"},
                    "state": {"type": "string", "description": "Kestra's state: CREATED, RUNNING, SUCCESS, ..."},
                    "traceId": {"type": ["string", "null"], "description": "the OpenTelemetry trace id"},
                    "trigger": {"type": "string", "enum": ["api", "webhook", "schedule", "subflow", "flow", "kubectl"]},
                    "triggerId": {"type": ["string", "null"], "description": "the Flow trigger's id (trigger flow)"},
                    "labels": {"type": "object"},
                    "inputs": {"type": "object"},
                    "outputs": {"type": "object"},
                    "message": {"type": ["string", "null"]},
                    "startDate": {"type": ["string", "null"], "format": "date-time"},
                    "endDate": {"type": ["string", "null"], "format": "date-time"},
                    "duration": {"type": ["string", "null"]},
                    "history": {"type": "array", "items": {"type": "object"}},
                    "taskRuns": {"type": "array", "items": {"type": "object"}},
                    "links": {
                        "type": "object",
                        "description": "self, follow and kill (paths on this API); jaeger when configured",
                        "additionalProperties": {"type": "string"},
                    },
                },
            },
        },
    },
}


def openapi_document() -> dict[str, Any]:
    return copy.deepcopy(_DOCUMENT)
