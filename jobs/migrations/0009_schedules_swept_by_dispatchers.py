# Schedules no longer own a django-celery-beat PeriodicTask: the dispatchers' sweep fires them at
# their next_fire_at (docs/schedules.md), and beat keeps only its own entries. The beat rows the
# schedules owned, and their crontabs, are deleted; a running beat is told to reload. The sweep
# copies a template's steps into each job as they are stored, so the stored steps take the shape
# a job stores (jobs.services.job_steps).

from django.conf import settings
from django.db import migrations, models
from django.utils import timezone

FIRE_SCHEDULE_TASK = "jobs.fire_schedule"  # the wake-up task those rows sent (removed)


def delete_wake_up_rows(apps, schema_editor):
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    PeriodicTasks = apps.get_model("django_celery_beat", "PeriodicTasks")
    CrontabSchedule = apps.get_model("django_celery_beat", "CrontabSchedule")
    tasks = PeriodicTask.objects.filter(task=FIRE_SCHEDULE_TASK)
    crontabs = set(tasks.values_list("crontab_id", flat=True)) - {None}
    if not tasks.delete()[0]:
        return
    # Each schedule had a crontab of its own; one another task uses stays.
    CrontabSchedule.objects.filter(id__in=crontabs, periodictask__isnull=True).delete()
    # What PeriodicTask.delete()'s signal does: a running beat sees the change and reloads.
    PeriodicTasks.objects.update_or_create(ident=1, defaults={"last_update": timezone.now()})


def _job_steps(steps):
    """jobs.services.job_steps as of this migration (a frozen copy: that one may change)."""
    return [
        {"type": s["type"], "params": s.get("params", {})}
        | ({"timeout": s["timeout"]} if s.get("timeout") is not None else {})
        for s in steps
    ]


def normalise_template_steps(apps, schema_editor):
    Schedule = apps.get_model("jobs", "Schedule")
    for schedule in Schedule.objects.only("id", "job_template").iterator():
        steps = _job_steps(schedule.job_template["steps"])
        if steps != schedule.job_template["steps"]:
            Schedule.objects.filter(id=schedule.id).update(
                job_template=schedule.job_template | {"steps": steps}
            )


class Migration(migrations.Migration):

    dependencies = [
        ('jobs', '0008_flow_control'),
        ('django_celery_beat', '0019_alter_periodictasks_options'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.RemoveField(
            model_name='schedule',
            name='periodic_task',
        ),
        # Irreversible: the code before it needs a beat row per schedule, which this cannot make.
        migrations.RunPython(delete_wake_up_rows),
        migrations.RunPython(normalise_template_steps, migrations.RunPython.noop),
        migrations.AddIndex(
            model_name='schedule',
            index=models.Index(condition=models.Q(('enabled', True), ('next_fire_at__isnull', False)), fields=['next_fire_at'], name='schedule_due'),
        ),
        migrations.AddIndex(
            model_name='schedule',
            index=models.Index(condition=models.Q(('buffered_for__isnull', False), ('enabled', True)), fields=['buffered_for'], name='schedule_buffered'),
        ),
    ]
