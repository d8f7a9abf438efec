from __future__ import annotations

from django.contrib import admin

from deadletter.models import DeadLetter


@admin.register(DeadLetter)
class DeadLetterAdmin(admin.ModelAdmin):
    list_display = ["job", "reason", "attempts", "created_at"]
    list_filter = ["reason"]
    readonly_fields = ["job", "reason", "error", "attempts", "created_at"]
    search_fields = ["job__name", "job__id"]
