from __future__ import annotations

from typing import Any

from rest_framework.exceptions import NotFound
from rest_framework.pagination import Cursor, CursorPagination
from rest_framework.request import Request

from jobplatform.errors import InvalidInput


class CreatedCursorPagination(CursorPagination):
    """Newest first; stable under inserts (a cursor, not an offset). ``?page_size=`` up to 500.

    The cursor holds the last ``created_at`` and how many rows of that instant were served. Rows
    that share an instant (two inserts in one microsecond) must come in the same order on every
    page, or one of them is served twice and another never: the id orders them.
    """

    ordering: tuple[str, ...] = ("-created_at", "-id")
    page_size_query_param = "page_size"
    max_page_size = 500

    def get_paginated_response_schema(self, schema: dict[str, Any]) -> dict[str, Any]:
        """The page as the OpenAPI document shows it (JSON Schema 2020-12: null is a type)."""

        def link(which: str) -> dict[str, Any]:
            return {
                "type": ["string", "null"],
                "format": "uri",
                "description": f"the {which} page (its cursor in the query), or null",
            }

        return {
            "type": "object",
            "required": ["next", "previous", "results"],
            "properties": {"next": link("next"), "previous": link("previous"), "results": schema},
        }

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        return [
            {
                "name": self.cursor_query_param,
                "required": False,
                "in": "query",
                "description": "a cursor from a page's next or previous link",
                "schema": {"type": "string"},
            },
            {
                "name": self.page_size_query_param,
                "required": False,
                "in": "query",
                "description": f"items per page; more than {self.max_page_size} counts as "
                f"{self.max_page_size}, and a value that is not a positive integer as the default",
                "schema": {"type": "integer"},
            },
        ]

    def decode_cursor(self, request: Request) -> Cursor | None:
        try:
            return super().decode_cursor(request)
        except NotFound:
            raise InvalidInput("API.INVALID_CURSOR", "the cursor is not valid") from None
