"""The admin API's OpenAPI 3 document (served at /admin/openapi.json; docs/api.md)."""

from __future__ import annotations

from typing import Any

from analyzer.api.status import PERSON_STATUSES
from analyzer.ask.openapi import ask_paths

AUDIT_STATUSES = ["queued", "running", "succeeded", "failed"]
RECOMMENDATION_STATUSES = ["proposed", "accepted", "rejected", "applied", "verified",
                           "ineffective", "reverted"]
MAX_LIMIT = 1000


def _error(description: str) -> dict[str, Any]:
    return {"description": description,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}


def _json(schema: dict[str, Any], description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_ID = {"name": "id", "in": "path", "required": True,
       "schema": {"type": "string", "pattern": "^[0-9]{1,18}$"}}
_TARGET_Q = {"name": "target", "in": "query", "required": False, "schema": {"type": "string"}}
_LIMIT_Q = {"name": "limit", "in": "query", "required": False,
            "schema": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": 100}}
_COMMON = {"401": _error("missing or wrong bearer token"),
           "503": _error("the store is unreachable")}


def document(server_url: str | None = None) -> dict[str, Any]:
    """The OpenAPI document."""
    obj: dict[str, Any] = {"type": "object"}
    audit_summary = {
        "type": "object",
        "required": ["audit_id", "target", "status"],
        "properties": {
            "audit_id": {"type": "string"}, "target": {"type": "string"},
            "status": {"type": "string", "enum": AUDIT_STATUSES},
            "requested_by": {"type": "string"},
            "started_at": {"type": ["string", "null"]},
            "finished_at": {"type": ["string", "null"]},
            "duration_seconds": {"type": ["number", "null"]},
            "error": {"type": ["string", "null"]},
        },
    }
    recommendation = {
        "type": "object", "required": ["id", "kind", "status", "target"],
        "properties": {"id": {"type": "string"}, "kind": {"type": "string"},
                       "status": {"type": "string"}, "target": {"type": "string"},
                       "evidence": obj},
    }
    doc: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {"title": "pgarchitect analyzer admin API", "version": "1",
                 "description": "Audits and recommendations of pgarchitect (docs/api.md)."},
        "security": [{"bearer": []}],
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Error": {"type": "object", "required": ["error"],
                          "properties": {"error": {"type": "string"}}},
                "AuditSummary": audit_summary,
                "Recommendation": recommendation,
            },
        },
        "paths": {
            "/admin/database/run-audit": {"post": {
                "summary": "Queue an audit of a target now",
                "requestBody": {"required": False, "content": {"application/json": {
                    "schema": {"type": "object", "additionalProperties": False,
                               "properties": {"target": {"type": "string"}}}}}},
                "responses": {
                    "202": _json({"type": "object", "required": ["audit_id", "target", "status"],
                                  "properties": {"audit_id": {"type": "string"},
                                                 "target": {"type": "string"},
                                                 "status": {"const": "queued"}}},
                                 "queued"),
                    "400": _error("the body is not JSON"),
                    "404": _error("no such target"),
                    "409": _error("an audit of the target is queued or running"),
                    "422": _error("the body is not as documented"),
                    **_COMMON,
                },
            }},
            "/admin/database/audits": {"get": {
                "summary": "Audits, newest first",
                "parameters": [_TARGET_Q, {"name": "status", "in": "query", "required": False,
                                           "schema": {"type": "string",
                                                      "enum": AUDIT_STATUSES}}, _LIMIT_Q],
                "responses": {"200": _json({"type": "array", "items": {
                    "$ref": "#/components/schemas/AuditSummary"}}),
                              "422": _error("a query parameter is not as documented"),
                              **_COMMON},
            }},
            "/admin/database/audits/{id}": {"get": {
                "summary": "One audit: the stored report when it succeeded, else its summary;"
                           " with Accept: text/html the audit's page (docs/report.md)",
                "parameters": [_ID, *(  # a signed link to the page (docs/api.md)
                    {"name": n, "in": "query", "required": False, "schema": {"type": "string"}}
                    for n in ("expires", "signature"))],
                "responses": {"200": {**_json(obj), "content": {
                    **_json(obj)["content"], "text/html": {"schema": {"type": "string"}}}},
                              "404": _error("no such audit"), **_COMMON},
            }},
            "/admin/database/recommendations": {"get": {
                "summary": "Recommendations, newest first",
                "parameters": [_TARGET_Q, {"name": "status", "in": "query", "required": False,
                                           "schema": {"type": "string",
                                                      "enum": RECOMMENDATION_STATUSES}},
                               _LIMIT_Q],
                "responses": {"200": _json({"type": "array", "items": {
                    "$ref": "#/components/schemas/Recommendation"}}),
                              "422": _error("a query parameter is not as documented"),
                              **_COMMON},
            }},
            "/admin/database/recommendations/{id}": {"get": {
                "summary": "One recommendation with its evidence and history",
                "parameters": [_ID],
                "responses": {"200": _json({"$ref": "#/components/schemas/Recommendation"}),
                              "404": _error("no such recommendation"), **_COMMON},
            }},
            "/admin/database/recommendations/{id}/status": {"post": {
                "summary": "Record a person's decision on a recommendation",
                "parameters": [_ID],
                "requestBody": {"required": True, "content": {"application/json": {
                    "schema": {"type": "object", "required": ["status"],
                               "additionalProperties": False,
                               "properties": {
                                   "status": {"type": "string", "enum": list(PERSON_STATUSES)},
                                   "note": {"type": ["string", "null"], "maxLength": 2000}}}}}},
                "responses": {"200": _json({"$ref": "#/components/schemas/Recommendation"}),
                              "400": _error("the body is not JSON"),
                              "404": _error("no such recommendation"),
                              "409": _error("the lifecycle does not allow this change"),
                              "422": _error("the body is not as documented"), **_COMMON},
            }},
        },
    }
    doc["paths"].update(ask_paths(_json, _error, _COMMON))
    if server_url:
        doc["servers"] = [{"url": server_url}]
    return doc
