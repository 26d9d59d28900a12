"""The ask routes in the admin API's OpenAPI document (analyzer/api/openapi.py adds them)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from analyzer.ask.answer import MAX_QUESTION

ANSWER = {
    "type": "object",
    "required": ["question", "generator", "sql", "columns", "rows", "row_count", "truncated",
                 "examples", "refused", "answered", "seconds"],
    "properties": {
        "question": {"type": "string"},
        "generator": {"type": "string", "enum": ["retrieval", "openai"]},
        "sql": {"type": ["string", "null"]},
        "columns": {"type": "array", "items": {"type": "string"}},
        "rows": {"type": "array", "items": {"type": "array"}},
        "row_count": {"type": "integer"}, "truncated": {"type": "boolean"},
        "examples": {"type": "array", "items": {
            "type": "object", "required": ["question", "similarity"],
            "properties": {"question": {"type": "string"}, "similarity": {"type": "number"}}}},
        "refused": {"type": ["string", "null"]},
        "answered": {"type": "boolean"}, "seconds": {"type": "number"},
    },
}


def ask_paths(json_: Callable[..., dict[str, Any]], error: Callable[[str], dict[str, Any]],
              common: dict[str, Any]) -> dict[str, Any]:
    """The paths of the ask routes."""
    question_id = {"name": "id", "in": "path", "required": True,
                   "schema": {"type": "string", "pattern": "^[0-9]{1,18}$"}}
    return {
        "/admin/database/ask": {"post": {
            "summary": "Answer a question in SQL over the store (or a target), guarded",
            "requestBody": {"required": True, "content": {"application/json": {"schema": {
                "type": "object", "required": ["question"], "additionalProperties": False,
                "properties": {"question": {"type": "string", "minLength": 1,
                                            "maxLength": MAX_QUESTION},
                               "target": {"type": ["string", "null"]}}}}}},
            "responses": {"200": json_(ANSWER), "400": error("the body is not JSON"),
                          "404": error("no such target"),
                          "422": error("the body is not as documented"), **common},
        }},
        "/admin/database/questions": {"get": {
            "summary": "The questions asked, newest first",
            "parameters": [{"name": "limit", "in": "query", "required": False,
                            "schema": {"type": "integer", "minimum": 1, "maximum": 1000}}],
            "responses": {"200": json_({"type": "array", "items": {"type": "object"}}),
                          "422": error("a query parameter is not as documented"), **common},
        }},
        "/admin/database/questions/{id}/promote": {"post": {
            "summary": "Make an answered question an example",
            "parameters": [question_id],
            "responses": {"200": json_({"type": "object",
                                        "required": ["question_id", "example_id"]}),
                          "404": error("no such question"),
                          "409": error("the question was not answered"), **common},
        }},
    }
