# shellcheck shell=bash
# Development environment for jobplatform. Source it, do not run it:
#
#   source scripts/env.sh
#
# Every variable keeps the value it already has; only unset ones get the defaults below, which
# match the servers of scripts/services.sh. The only side effect besides exports: a random
# DJANGO_SECRET_KEY and JOBPLATFORM_METRICS_TOKEN are generated once into $RUN_DIR/secret-key
# and $RUN_DIR/metrics-token (mode 600) and reused.
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

# Prints the secret kept in $RUN_DIR/$1, generating it (random, mode 600) the first time.
_jp_secret() {
    if [ ! -s "$RUN_DIR/$1" ]; then
        mkdir -p "$RUN_DIR"
        (
            umask 077
            _jp_python="$(command -v python3 || command -v python)"
            "$_jp_python" -c 'import secrets; print(secrets.token_urlsafe(50))' \
                >"$RUN_DIR/$1.tmp.$$" &&
                mv -f "$RUN_DIR/$1.tmp.$$" "$RUN_DIR/$1"
        )
        chmod 600 "$RUN_DIR/$1" 2>/dev/null
    fi
    cat "$RUN_DIR/$1"
}

: "${DJANGO_SECRET_KEY:=$(_jp_secret secret-key)}"
# /metrics is closed without it; make run prints how to scrape with it.
: "${JOBPLATFORM_METRICS_TOKEN:=$(_jp_secret metrics-token)}"
export DJANGO_SECRET_KEY JOBPLATFORM_METRICS_TOKEN

unset _jp_root
unset -f _jp_secret
