"""What every admin page of the platform shares: rows change only through the services.

The admin is an operator's console, not a table editor: a row edited or deleted by hand can reach
a state no service can (a RUNNING job with no attempt, a FAILED job with no dead letter). So the
platform's admins offer no add, no delete and no save; they act through actions that call the
services, each of which writes its audit row.
"""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.contrib.admin.helpers import ActionForm
from django.http import HttpRequest, HttpResponse
from django.utils.html import format_html
from django.utils.safestring import SafeString


class NoteActionForm(ActionForm):
    """The action bar gets a note field: why the selection is cancelled, retried or dismissed."""

    note = forms.CharField(required=False, max_length=2000, label="Note")


class ServicesOnlyAdmin:
    """A ModelAdmin mixin: no add, no delete (retention purges), no save button.

    The change permission stays, for the actions; the change page shows the row read-only.
    """

    def has_add_permission(self, request: HttpRequest, *args: Any) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        context = {
            "show_save": False,
            "show_save_and_continue": False,
            "show_save_and_add_another": False,
            "show_delete": False,
            **(extra_context or {}),
        }
        response: HttpResponse = super().change_view(  # type: ignore[misc]
            request, object_id, form_url, context
        )
        return response


def pre(value: Any) -> SafeString:
    """A value as preformatted, escaped text: JSON indented, a traceback as it was printed."""
    text = value if isinstance(value, str) else json.dumps(value, indent=2, sort_keys=True)
    return format_html('<pre style="white-space: pre-wrap; margin: 0">{}</pre>', text)
