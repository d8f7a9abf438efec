from __future__ import annotations

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

    def decode_cursor(self, request: Request) -> Cursor | None:
        try:
            return super().decode_cursor(request)
        except NotFound:
            raise InvalidInput("API.INVALID_CURSOR", "the cursor is not valid") from None
