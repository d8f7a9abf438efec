from __future__ import annotations

from django.urls import path

from deadletter.api import views

# The fixed paths (groups, stats, retry, dismiss) come before the <int:...> ones.
urlpatterns = [
    path("dead-letters/", views.DeadLetterListApi.as_view(), name="dead-letter-list"),
    path("dead-letters/groups/", views.DeadLetterGroupsApi.as_view(), name="dead-letter-groups"),
    path("dead-letters/stats/", views.DeadLetterStatsApi.as_view(), name="dead-letter-stats"),
    path(
        "dead-letters/retry/",
        views.DeadLetterBulkRetryApi.as_view(),
        name="dead-letter-retry-bulk",
    ),
    path(
        "dead-letters/dismiss/",
        views.DeadLetterBulkDismissApi.as_view(),
        name="dead-letter-dismiss-bulk",
    ),
    path(
        "dead-letters/<int:dead_letter_id>/",
        views.DeadLetterDetailApi.as_view(),
        name="dead-letter-detail",
    ),
    path(
        "dead-letters/<int:dead_letter_id>/retry/",
        views.DeadLetterRetryApi.as_view(),
        name="dead-letter-retry",
    ),
    path(
        "dead-letters/<int:dead_letter_id>/dismiss/",
        views.DeadLetterDismissApi.as_view(),
        name="dead-letter-dismiss",
    ),
    # A job's retry closes its dead letter: the view is this app's (see JobRetryApi).
    path("jobs/<uuid:job_id>/retry/", views.JobRetryApi.as_view(), name="job-retry"),
]
