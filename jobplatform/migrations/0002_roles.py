"""The roles viewer, operator and admin as Django groups with their permissions.

Frozen: a copy of jobplatform.roles as it was when this was written, so that the migration does
the same on every database whatever the live code becomes (tests/jobplatform/test_roles.py
checks that the live table and these groups agree). Permissions are created here when they do
not exist yet: on a new database Django creates them only after every migration has run.

Existing users keep what they could do: staff (who saw every owner's work) become admins, every
other user an operator (who submits and acts on their own jobs). Superusers stay superusers.
"""

from django.conf import settings
from django.db import migrations

# "app_label.codename": (model, name), as Django names the permissions of these models.
PERMISSIONS = {
    'auth.add_group': ('group', 'Can add group'),
    'auth.add_user': ('user', 'Can add user'),
    'auth.change_group': ('group', 'Can change group'),
    'auth.change_user': ('user', 'Can change user'),
    'auth.delete_group': ('group', 'Can delete group'),
    'auth.delete_user': ('user', 'Can delete user'),
    'auth.view_group': ('group', 'Can view group'),
    'auth.view_permission': ('permission', 'Can view permission'),
    'auth.view_user': ('user', 'Can view user'),
    'authtoken.add_token': ('token', 'Can add Token'),
    'authtoken.add_tokenproxy': ('tokenproxy', 'Can add Token'),
    'authtoken.change_token': ('token', 'Can change Token'),
    'authtoken.change_tokenproxy': ('tokenproxy', 'Can change Token'),
    'authtoken.delete_token': ('token', 'Can delete Token'),
    'authtoken.delete_tokenproxy': ('tokenproxy', 'Can delete Token'),
    'authtoken.view_token': ('token', 'Can view Token'),
    'authtoken.view_tokenproxy': ('tokenproxy', 'Can view Token'),
    'deadletter.add_deadletter': ('deadletter', 'Can add dead letter'),
    'deadletter.add_deadletteraction': ('deadletteraction', 'Can add dead letter action'),
    'deadletter.change_deadletter': ('deadletter', 'Can change dead letter'),
    'deadletter.change_deadletteraction': ('deadletteraction', 'Can change dead letter action'),
    'deadletter.delete_deadletter': ('deadletter', 'Can delete dead letter'),
    'deadletter.delete_deadletteraction': ('deadletteraction', 'Can delete dead letter action'),
    'deadletter.view_deadletter': ('deadletter', 'Can view dead letter'),
    'deadletter.view_deadletteraction': ('deadletteraction', 'Can view dead letter action'),
    'django_celery_beat.add_clockedschedule': ('clockedschedule', 'Can add clocked'),
    'django_celery_beat.add_crontabschedule': ('crontabschedule', 'Can add crontab'),
    'django_celery_beat.add_intervalschedule': ('intervalschedule', 'Can add interval'),
    'django_celery_beat.add_periodictask': ('periodictask', 'Can add periodic task'),
    'django_celery_beat.add_solarschedule': ('solarschedule', 'Can add solar event'),
    'django_celery_beat.change_clockedschedule': ('clockedschedule', 'Can change clocked'),
    'django_celery_beat.change_crontabschedule': ('crontabschedule', 'Can change crontab'),
    'django_celery_beat.change_intervalschedule': ('intervalschedule', 'Can change interval'),
    'django_celery_beat.change_periodictask': ('periodictask', 'Can change periodic task'),
    'django_celery_beat.change_solarschedule': ('solarschedule', 'Can change solar event'),
    'django_celery_beat.delete_clockedschedule': ('clockedschedule', 'Can delete clocked'),
    'django_celery_beat.delete_crontabschedule': ('crontabschedule', 'Can delete crontab'),
    'django_celery_beat.delete_intervalschedule': ('intervalschedule', 'Can delete interval'),
    'django_celery_beat.delete_periodictask': ('periodictask', 'Can delete periodic task'),
    'django_celery_beat.delete_solarschedule': ('solarschedule', 'Can delete solar event'),
    'django_celery_beat.view_clockedschedule': ('clockedschedule', 'Can view clocked'),
    'django_celery_beat.view_crontabschedule': ('crontabschedule', 'Can view crontab'),
    'django_celery_beat.view_intervalschedule': ('intervalschedule', 'Can view interval'),
    'django_celery_beat.view_periodictask': ('periodictask', 'Can view periodic task'),
    'django_celery_beat.view_solarschedule': ('solarschedule', 'Can view solar event'),
    'executions.add_execution': ('execution', 'Can add execution'),
    'executions.add_stepresult': ('stepresult', 'Can add step result'),
    'executions.change_execution': ('execution', 'Can change execution'),
    'executions.change_stepresult': ('stepresult', 'Can change step result'),
    'executions.delete_execution': ('execution', 'Can delete execution'),
    'executions.delete_stepresult': ('stepresult', 'Can delete step result'),
    'executions.view_execution': ('execution', 'Can view execution'),
    'executions.view_stepresult': ('stepresult', 'Can view step result'),
    'jobplatform.access_all_owners': ('team', "Can see and act on every owner's jobs, schedules and dead letters"),
    'jobplatform.add_apikey': ('apikey', 'Can add API key'),
    'jobplatform.add_team': ('team', 'Can add team'),
    'jobplatform.change_apikey': ('apikey', 'Can change API key'),
    'jobplatform.change_team': ('team', 'Can change team'),
    'jobplatform.delete_apikey': ('apikey', 'Can delete API key'),
    'jobplatform.delete_team': ('team', 'Can delete team'),
    'jobplatform.view_apikey': ('apikey', 'Can view API key'),
    'jobplatform.view_auditevent': ('auditevent', 'Can view audit event'),
    'jobplatform.view_team': ('team', 'Can view team'),
    'jobs.add_job': ('job', 'Can add job'),
    'jobs.add_schedule': ('schedule', 'Can add schedule'),
    'jobs.add_schedulefiring': ('schedulefiring', 'Can add schedule firing'),
    'jobs.change_job': ('job', 'Can change job'),
    'jobs.change_schedule': ('schedule', 'Can change schedule'),
    'jobs.change_schedulefiring': ('schedulefiring', 'Can change schedule firing'),
    'jobs.delete_job': ('job', 'Can delete job'),
    'jobs.delete_schedule': ('schedule', 'Can delete schedule'),
    'jobs.delete_schedulefiring': ('schedulefiring', 'Can delete schedule firing'),
    'jobs.view_job': ('job', 'Can view job'),
    'jobs.view_schedule': ('schedule', 'Can view schedule'),
    'jobs.view_schedulefiring': ('schedulefiring', 'Can view schedule firing'),
}

VIEWER = [
    'deadletter.view_deadletter',
    'deadletter.view_deadletteraction',
    'executions.view_execution',
    'executions.view_stepresult',
    'jobs.view_job',
    'jobs.view_schedule',
    'jobs.view_schedulefiring',
]
OPERATOR = VIEWER + [
    'deadletter.change_deadletter',
    'jobs.add_job',
    'jobs.add_schedule',
    'jobs.change_job',
    'jobs.change_schedule',
    'jobs.delete_schedule',
]
ADMIN = OPERATOR + [
    'auth.add_group',
    'auth.add_user',
    'auth.change_group',
    'auth.change_user',
    'auth.delete_group',
    'auth.delete_user',
    'auth.view_group',
    'auth.view_permission',
    'auth.view_user',
    'authtoken.add_token',
    'authtoken.add_tokenproxy',
    'authtoken.change_token',
    'authtoken.change_tokenproxy',
    'authtoken.delete_token',
    'authtoken.delete_tokenproxy',
    'authtoken.view_token',
    'authtoken.view_tokenproxy',
    'deadletter.add_deadletter',
    'deadletter.add_deadletteraction',
    'deadletter.change_deadletteraction',
    'deadletter.delete_deadletter',
    'deadletter.delete_deadletteraction',
    'django_celery_beat.add_clockedschedule',
    'django_celery_beat.add_crontabschedule',
    'django_celery_beat.add_intervalschedule',
    'django_celery_beat.add_periodictask',
    'django_celery_beat.add_solarschedule',
    'django_celery_beat.change_clockedschedule',
    'django_celery_beat.change_crontabschedule',
    'django_celery_beat.change_intervalschedule',
    'django_celery_beat.change_periodictask',
    'django_celery_beat.change_solarschedule',
    'django_celery_beat.delete_clockedschedule',
    'django_celery_beat.delete_crontabschedule',
    'django_celery_beat.delete_intervalschedule',
    'django_celery_beat.delete_periodictask',
    'django_celery_beat.delete_solarschedule',
    'django_celery_beat.view_clockedschedule',
    'django_celery_beat.view_crontabschedule',
    'django_celery_beat.view_intervalschedule',
    'django_celery_beat.view_periodictask',
    'django_celery_beat.view_solarschedule',
    'executions.add_execution',
    'executions.add_stepresult',
    'executions.change_execution',
    'executions.change_stepresult',
    'executions.delete_execution',
    'executions.delete_stepresult',
    'jobplatform.access_all_owners',
    'jobplatform.add_apikey',
    'jobplatform.add_team',
    'jobplatform.change_apikey',
    'jobplatform.change_team',
    'jobplatform.delete_apikey',
    'jobplatform.delete_team',
    'jobplatform.view_apikey',
    'jobplatform.view_auditevent',
    'jobplatform.view_team',
    'jobs.add_schedulefiring',
    'jobs.change_schedulefiring',
    'jobs.delete_job',
    'jobs.delete_schedulefiring',
]
ROLES = {"viewer": VIEWER, "operator": OPERATOR, "admin": ADMIN}


def create_roles(apps, schema_editor):
    ContentType = apps.get_model("contenttypes", "ContentType")
    Permission = apps.get_model("auth", "Permission")
    Group = apps.get_model("auth", "Group")
    User = apps.get_model(settings.AUTH_USER_MODEL)
    permissions = {}
    for key, (model, name) in PERMISSIONS.items():
        app_label, codename = key.split(".")
        content_type, _ = ContentType.objects.get_or_create(app_label=app_label, model=model)
        permissions[key], _ = Permission.objects.get_or_create(
            content_type=content_type, codename=codename, defaults={"name": name}
        )
    groups = {}
    for role, keys in ROLES.items():
        groups[role], _ = Group.objects.get_or_create(name=role)
        groups[role].permissions.add(*(permissions[key] for key in keys))
    without_role = User.objects.exclude(groups__name__in=list(ROLES))
    groups["admin"].user_set.add(*without_role.filter(is_staff=True))
    groups["operator"].user_set.add(*without_role.filter(is_staff=False))


def delete_roles(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name__in=list(ROLES)).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("jobplatform", "0001_teams_api_keys_audit"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [migrations.RunPython(create_roles, delete_roles)]
