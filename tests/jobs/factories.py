from __future__ import annotations

import factory

from jobs.models import Job
from tests.factories import UserFactory


class JobFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Job

    owner = factory.SubFactory(UserFactory)
    name = factory.Sequence(lambda n: f"job-{n}")
    steps = factory.LazyFunction(lambda: [{"type": "log", "params": {"message": "hi"}}])
