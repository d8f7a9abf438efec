"""The admin's search by trace id. Built CONCURRENTLY: a plain CREATE INDEX would block every
job INSERT and UPDATE for as long as the build takes on a large table."""

from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models


class Migration(migrations.Migration):
    atomic = False  # CREATE INDEX CONCURRENTLY cannot run inside a transaction

    dependencies = [
        ("jobs", "0011_schedule_job_hosts"),
    ]

    operations = [
        AddIndexConcurrently(
            model_name="job",
            index=models.Index(fields=["trace_id"], name="job_trace_id"),
        ),
    ]
