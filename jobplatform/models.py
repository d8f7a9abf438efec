"""Who may do what: teams, API keys and the audit trail of security-relevant actions.

Roles are Django groups (``jobplatform.roles``); these models hold what groups cannot.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.db import models
from django.db.models import Q
from django.utils import timezone
from rest_framework_api_key.models import AbstractAPIKey


class Team(models.Model):
    """Users who share their work: each member sees (and, as an operator, acts on) the jobs,
    schedules and dead letters of every other member. A user may be in several teams.

    A model of its own rather than Django groups with a naming convention: groups carry
    permissions, so a team group given a permission by mistake would grant it to its members,
    and role and team groups would be told apart by their names only.
    """

    name = models.CharField(max_length=100, unique=True)
    members = models.ManyToManyField(settings.AUTH_USER_MODEL, related_name="teams", blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]
        permissions = [
            (
                "access_all_owners",
                "Can see and act on every owner's jobs, schedules and dead letters",
            )
        ]

    def __str__(self) -> str:
        return self.name


class ApiKey(AbstractAPIKey):
    """An API key of one user (``Authorization: Api-Key <prefix>.<secret>``).

    djangorestframework-api-key keeps the key's SHA-512 hash and, in clear, only its 8-character
    prefix (the lookup and the public id); the key itself is shown once, at creation. A key acts
    as its user with at most its ``scopes``.
    """

    class Scope(models.TextChoices):
        READ = "read", "read (GET)"
        WRITE = "write", "write (POST, PATCH, DELETE)"

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_keys"
    )
    scopes = ArrayField(models.CharField(max_length=8, choices=Scope.choices), default=list, size=2)
    # Written at most once a minute per key (JOBPLATFORM_API_KEY_LAST_USED_PRECISION), not on
    # every request: see jobplatform.services.api_key_touch.
    last_used_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta(AbstractAPIKey.Meta):
        verbose_name = "API key"
        verbose_name_plural = "API keys"
        indexes = [models.Index(fields=["user", "-created"], name="apikey_user_created")]


class AuditEvent(models.Model):
    """One security-relevant action: who did what to whom, when. Written by the services that
    act; read-only everywhere (the admin shows it, nothing edits it)."""

    class Action(models.TextChoices):
        API_KEY_CREATED = "api_key.created", "API key created"
        API_KEY_REVOKED = "api_key.revoked", "API key revoked"
        ACCESS_CHANGED = "user.access_changed", "user roles, permissions or flags changed"
        TEAM_CHANGED = "team.members_changed", "team members changed"
        BULK_RETRY = "dead_letters.bulk_retry", "dead letters retried in bulk"
        BULK_DISMISS = "dead_letters.bulk_dismiss", "dead letters dismissed in bulk"
        JOB_CANCELLED = "job.cancelled", "job cancelled"
        # Flow control, by operators and admins (the breakers' own transitions are logged only).
        QUEUE_PAUSED = "queue.paused", "queue paused"
        QUEUE_RESUMED = "queue.resumed", "queue resumed"
        QUEUE_CAP_CHANGED = "queue.cap_changed", "queue in-flight cap changed"
        QUOTA_CHANGED = "owner_quota.changed", "owner's weight or cap changed"
        RATE_LIMIT_SET = "rate_limit.set", "rate limit created or changed"
        RATE_LIMIT_DELETED = "rate_limit.deleted", "rate limit deleted"
        BREAKER_OPENED = "breaker.opened", "circuit breaker opened by hand"
        BREAKER_CLOSED = "breaker.closed", "circuit breaker closed by hand"

    created_at = models.DateTimeField(default=timezone.now)
    action = models.CharField(max_length=32, choices=Action.choices)
    # None: a management command, a migration or the system acted.
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    actor_name = models.CharField(max_length=150, blank=True)  # kept if the user is deleted
    subject = models.CharField(max_length=200)  # "user alice", "key AbCd1234 of alice", ...
    details = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["action", "-created_at"], name="audit_action_created"),
            # A job's page reads its trail by subject ("job <uuid>").
            models.Index(fields=["subject", "created_at"], name="audit_subject_created"),
        ]

    def __str__(self) -> str:
        return f"{self.action} {self.subject}"


class ProcessRole(models.TextChoices):
    """The platform's long-running processes that say they are alive (docs/operations.md)."""

    WORKER = "worker"  # a Celery worker's main process (its pool processes beat their attempts)
    DISPATCHER = "dispatcher"  # manage.py run_dispatcher: beats from its loop, between passes
    BEAT = "beat"  # celery beat


class ProcessHeartbeat(models.Model):
    """A process's last sign of life, written every ``JOBPLATFORM_LIVENESS_INTERVAL`` seconds.

    A process is alive while its ``beat_at`` is younger than three intervals. Rows of processes
    that stopped stay (shown as not alive) until a dispatcher deletes those silent for a day.
    """

    Role = ProcessRole

    role = models.CharField(max_length=16, choices=Role.choices)
    # A worker: its Celery node name (worker@host); a dispatcher or beat: host:pid.
    name = models.CharField(max_length=255)
    hostname = models.CharField(max_length=255)
    pid = models.PositiveIntegerField()
    started_at = models.DateTimeField()
    beat_at = models.DateTimeField()
    details = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["role", "name"]
        constraints = [
            models.UniqueConstraint(fields=["role", "name"], name="one_heartbeat_per_process"),
            models.CheckConstraint(
                condition=Q(role__in=ProcessRole.values), name="process_role_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.role} {self.name}"


class OutboxMessage(models.Model):
    """A Celery message written in the transaction of the change it announces, published once
    that transaction commits and deleted once published (``jobplatform.outbox``).

    A row older than ``JOBPLATFORM_OUTBOX_REPUBLISH_AFTER`` seconds is a message whose publish
    never happened (its process died between the commit and the publish, or the broker refused
    it): a dispatcher publishes it then. Its consumer must take a second copy calmly (the
    completion callbacks and the dead-letter webhook carry their delivery's id).
    """

    task = models.CharField(max_length=200)
    args = models.JSONField(default=list)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["created_at"], name="outbox_created")]

    def __str__(self) -> str:
        return f"{self.task} {self.args}"
