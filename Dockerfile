# jobplatform image: one image for every process (web, dispatcher, worker, beat, flower, migrate);
# docker-compose.yml picks the command. Configuration comes from the environment at run time
# (see .env.example); no secret is baked into the image.
FROM python:3.11-slim

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

COPY requirements.txt ./
RUN pip install -r requirements.txt

# Only the application itself: never .env, secrets/, .run/ or .venv from the build context.
COPY manage.py gunicorn.conf.py flowerconfig.py ./
COPY jobplatform/ jobplatform/
COPY jobs/ jobs/
COPY executions/ executions/
COPY deadletter/ deadletter/

# collectstatic needs the settings to load, so it gets throwaway values that exist only for this
# step: the build argument is not an ENV and the placeholder URLs are never connected to.
ARG DJANGO_SECRET_KEY=collectstatic-build-only-not-a-secret
RUN DJANGO_SECRET_KEY="$DJANGO_SECRET_KEY" \
    DATABASE_URL=postgres://build@127.0.0.1:1/build \
    REDIS_URL=redis://127.0.0.1:1/0 \
    DJANGO_DEBUG=0 \
    python manage.py collectstatic --noinput -v0

USER app
EXPOSE 8000 5555

# Default process: the web server (gunicorn.conf.py: WEB_CONCURRENCY processes, WEB_THREADS threads).
CMD ["gunicorn", "jobplatform.wsgi:application", "--bind", "0.0.0.0:8000", "--access-logfile", "-"]
