"""The three roles, as Django groups with permissions, and what each may do.

The API asks for a permission (``jobs.add_job``), never for a role name, so an installation may
add groups of its own (say, a viewer of every owner's work: ``jobs.view_job`` and
``jobplatform.access_all_owners``). The groups and their permissions are created by the data
migrations ``jobplatform/migrations/0002_roles.py`` and, for flow control,
``jobs/migrations/0008_flow_control.py``, which keep their own frozen copies of this table;
``tests/jobplatform/test_roles.py`` checks that they agree.
"""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    VIEWER = "viewer"  # reads its own and its teams' jobs, schedules and dead letters
    OPERATOR = "operator"  # and submits, cancels, retries, dismisses, runs schedules
    ADMIN = "admin"  # and everything else, every owner's work, users, teams and keys


def _crud(*models: str) -> frozenset[str]:
    return frozenset(
        f"{app}.{action}_{name}"
        for app, name in (model.split(".") for model in models)
        for action in ("add", "change", "delete", "view")
    )


# Role -> the permissions its group holds ("app_label.codename").
VIEWER = frozenset(
    {
        "jobs.view_job",
        "jobs.view_schedule",
        "jobs.view_schedulefiring",
        "executions.view_execution",
        "executions.view_stepresult",
        "deadletter.view_deadletter",
        "deadletter.view_deadletteraction",
        "jobs.view_queue",  # the queues, paused or not, their caps and jobs in flight
        "jobs.view_ratelimit",  # the rate limits jobs count against
        "jobs.view_circuitbreaker",  # the http hosts' circuit breakers and their state
    }
)
OPERATOR = VIEWER | {
    "jobs.add_job",  # submit, one or in bulk
    "jobs.change_job",  # cancel, move run_at
    "jobs.add_schedule",
    "jobs.change_schedule",  # edit, pause, resume, trigger
    "jobs.delete_schedule",
    "deadletter.change_deadletter",  # retry, dismiss, one or in bulk
    "jobs.pause_queue",  # pause and resume a queue (an incident, a deploy); not its cap
    "jobs.operate_circuitbreaker",  # open and close a host's breaker by hand (an incident)
}
ADMIN = (
    OPERATOR
    | _crud(
        "jobs.job",
        "jobs.schedule",
        "jobs.schedulefiring",
        "executions.execution",
        "executions.stepresult",
        "deadletter.deadletter",
        "deadletter.deadletteraction",
        "jobplatform.team",
        "jobplatform.apikey",
        "auth.user",
        "auth.group",
        "authtoken.token",
        "authtoken.tokenproxy",
        "django_celery_beat.periodictask",
        "django_celery_beat.crontabschedule",
        "django_celery_beat.intervalschedule",
        "django_celery_beat.clockedschedule",
        "django_celery_beat.solarschedule",
        "jobs.ownerquota",  # an owner's fair-share weight and cap on unfinished jobs
        "jobs.ratelimit",  # the rate limits: capacity agreed with a downstream, for every owner
    )
    | {
        "auth.view_permission",
        "jobplatform.view_auditevent",  # the audit trail is read-only, even for admins
        "jobplatform.access_all_owners",
        "jobs.change_queue",  # a queue's in-flight cap: capacity planning, every owner's
    }
)

PERMISSIONS: dict[Role, frozenset[str]] = {
    Role.VIEWER: VIEWER,
    Role.OPERATOR: OPERATOR,
    Role.ADMIN: ADMIN,
}

# Sees and acts on every owner's work (with the action's own permission).
ACCESS_ALL_OWNERS = "jobplatform.access_all_owners"
