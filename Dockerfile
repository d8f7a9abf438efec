# syntax=docker/dockerfile:1
# jobplatform image: one image for every process (web, dispatcher, worker, beat, flower, migrate);
# docker-compose.yml and deploy/k8s/ pick the command. Configuration comes from the environment at
# run time (docs/configuration.md); no secret is baked into the image. docs/deploy.md builds it.
#
# Two stages: the builder turns requirements.txt into wheels (with a compiler, should a package
# ever need one); the final image installs those wheels only, and has no compiler, no build
# tools and none of the dev tools of requirements-dev.txt (pytest, ruff, mypy, supervisor...).
# Both stages use the same pinned Python, so the wheels fit.

FROM python:3.11.13-slim-bookworm AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /build
COPY requirements.txt ./
RUN pip wheel --wheel-dir /wheels -r requirements.txt


FROM python:3.11.13-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DJANGO_STATIC_ROOT=/app/staticfiles \
    WEB_CONCURRENCY=2

WORKDIR /app

# Unprivileged user that runs the processes; the code stays owned by root, read-only to it.
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --home-dir /app --no-create-home \
        --shell /usr/sbin/nologin app

# The builder's wheels, bind-mounted for this step only: they leave no layer behind.
COPY requirements.txt ./
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    pip install --no-index --find-links=/wheels -r requirements.txt

# Only the application itself (.dockerignore keeps .env, secrets/, .run/, .venv, tests out of
# the context too).
COPY manage.py gunicorn.conf.py flowerconfig.py ./
COPY jobplatform/ jobplatform/
COPY jobs/ jobs/
COPY executions/ executions/
COPY deadletter/ deadletter/
COPY console/ console/

# collectstatic needs the settings to load, so it gets throwaway values that exist only for this
# step (not ENV: no later layer or container sees them); the URLs are never connected to.
RUN DJANGO_SECRET_KEY=collectstatic-build-only-not-a-secret \
    DATABASE_URL=postgres://build@127.0.0.1:1/build \
    REDIS_URL=redis://127.0.0.1:1/0 \
    DJANGO_DEBUG=0 \
    python manage.py collectstatic --noinput -v0

# Numeric, so that Kubernetes (runAsNonRoot) can tell it is not root without reading /etc/passwd.
USER 10001:10001
EXPOSE 8000 5555

# The web process's health (database and broker). Every other role overrides it in
# docker-compose.yml (and Kubernetes ignores it for its own probes).
HEALTHCHECK --interval=30s --timeout=10s --start-period=30s --retries=3 \
    CMD ["python", "-m", "jobplatform.probe", "http://127.0.0.1:8000/api/v1/health/"]

# Default process: the web server (gunicorn.conf.py: WEB_CONCURRENCY processes, WEB_THREADS threads).
CMD ["gunicorn", "jobplatform.wsgi:application", "--bind", "0.0.0.0:8000"]
