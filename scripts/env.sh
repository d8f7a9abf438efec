# shellcheck shell=bash
# Development environment for jobplatform. Source it, do not run it:
#
#   source scripts/env.sh
#
# Every variable keeps the value it already has; only unset ones get the defaults below, which
# match the servers of scripts/services.sh. The only side effect besides exports: a random
# DJANGO_SECRET_KEY is generated once into $RUN_DIR/secret-key (mode 600) and reused.
# See .env.example for what each variable means.

_jp_root="$(cd "$(dirname "${BASH_SOURCE[0]:-$0}")/.." && pwd)"

: "${RUN_DIR:=$_jp_root/.run}"
case "$RUN_DIR" in /*) ;; *) RUN_DIR="$PWD/$RUN_DIR" ;; esac
export RUN_DIR

: "${DATABASE_URL:=postgres://postgres@127.0.0.1:${PGPORT:-55432}/jobplatform}"
: "${REDIS_URL:=redis://127.0.0.1:${REDIS_PORT:-56379}/0}"
: "${DJANGO_DEBUG:=0}"
: "${DJANGO_ALLOWED_HOSTS:=localhost,127.0.0.1}"
: "${DJANGO_STATIC_ROOT:=$RUN_DIR/static}"
# Logs for a person at a terminal; production (and docker compose) log JSON lines.
: "${JOBPLATFORM_LOG_FORMAT:=console}"
export DATABASE_URL REDIS_URL DJANGO_DEBUG DJANGO_ALLOWED_HOSTS DJANGO_STATIC_ROOT
export JOBPLATFORM_LOG_FORMAT

if [ -z "${DJANGO_SECRET_KEY:-}" ]; then
    if [ ! -s "$RUN_DIR/secret-key" ]; then
        mkdir -p "$RUN_DIR"
        (
            umask 077
            _jp_python="$(command -v python3 || command -v python)"
            "$_jp_python" -c 'import secrets; print(secrets.token_urlsafe(50))' \
                >"$RUN_DIR/secret-key.tmp.$$" &&
                mv -f "$RUN_DIR/secret-key.tmp.$$" "$RUN_DIR/secret-key"
        )
        chmod 600 "$RUN_DIR/secret-key" 2>/dev/null
    fi
    DJANGO_SECRET_KEY="$(cat "$RUN_DIR/secret-key")"
fi
export DJANGO_SECRET_KEY

unset _jp_root
