#!/usr/bin/env bash
# Local PostgreSQL and Redis for development and tests, kept under $RUN_DIR (default <repo>/.run).
#
#   scripts/services.sh start    start (or reuse) both servers; idempotent
#   scripts/services.sh stop     stop the servers started from $RUN_DIR; silent if none runs
#   scripts/services.sh status   print what runs
#
# Both servers listen on 127.0.0.1 only:
#   PostgreSQL  127.0.0.1:${PGPORT:-55432}, user postgres (trust), database jobplatform,
#               data in $RUN_DIR/postgres/data, log in $RUN_DIR/postgres/log
#   Redis       127.0.0.1:${REDIS_PORT:-56379}, no persistence, files in $RUN_DIR/redis
#
# `start` skips PostgreSQL when DATABASE_URL points somewhere else than the local default
# (postgres://postgres@127.0.0.1:$PGPORT/jobplatform), and Redis likewise for REDIS_URL: an
# external server is then used and this script leaves it alone. scripts/env.sh exports the
# matching URLs. PostgreSQL refuses to run as root, so as root the server runs as the `postgres`
# system user. As root, missing server packages are installed with apt-get; otherwise the script
# prints what to install and exits 1.
set -euo pipefail

ROOT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
RUN_DIR="${RUN_DIR:-$ROOT_DIR/.run}"
case "$RUN_DIR" in /*) ;; *) RUN_DIR="$PWD/$RUN_DIR" ;; esac

PGPORT="${PGPORT:-55432}"
REDIS_PORT="${REDIS_PORT:-56379}"
PG_DB=jobplatform
PG_DIR="$RUN_DIR/postgres"
PG_DATA="$PG_DIR/data"
PG_LOG="$PG_DIR/log"
REDIS_DIR="$RUN_DIR/redis"
REDIS_PIDFILE="$REDIS_DIR/redis.pid"
REDIS_LOGFILE="$REDIS_DIR/redis.log"
REDIS_PORTFILE="$REDIS_DIR/port"

LOCAL_DATABASE_URL="postgres://postgres@127.0.0.1:$PGPORT/$PG_DB"
LOCAL_REDIS_URL="redis://127.0.0.1:$REDIS_PORT/0"

log() { printf 'services: %s\n' "$*"; }
die() {
    printf 'services: error: %s\n' "$*" >&2
    exit 1
}
is_root() { [[ $EUID -eq 0 ]]; }
# Hide the password of a URL when printing it.
mask_url() { sed -E 's#^([a-z0-9+]+://[^:/@]*):[^@/]*@#\1:***@#' <<<"$1"; }

# ---------------------------------------------------------------------------------------------
# Package installation (root only)

APT_UPDATED=""
apt_install() {
    is_root || return 1
    command -v apt-get >/dev/null 2>&1 || return 1
    if [[ -z $APT_UPDATED ]]; then
        log "apt-get update"
        apt-get update
        APT_UPDATED=1
    fi
    log "apt-get install $*"
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$@"
}

# ---------------------------------------------------------------------------------------------
# PostgreSQL

# A directory holding the PostgreSQL server binaries, or nothing. Prefers the version the data
# directory was created with, then pg_config --bindir, then the newest /usr/lib/postgresql/*/bin,
# then whatever is on PATH.
find_pg_bindir() {
    local dir candidates=()
    if [[ -r $PG_DATA/PG_VERSION ]]; then
        candidates+=("/usr/lib/postgresql/$(<"$PG_DATA/PG_VERSION")/bin")
    fi
    if command -v pg_config >/dev/null 2>&1; then
        candidates+=("$(pg_config --bindir 2>/dev/null || true)")
    fi
    while IFS= read -r dir; do
        candidates+=("$dir")
    done < <(find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -name bin -type d 2>/dev/null | sort -rV)
    if command -v initdb >/dev/null 2>&1; then
        candidates+=("$(dirname "$(command -v initdb)")")
    fi
    for dir in "${candidates[@]}"; do
        if [[ -n $dir && -x $dir/postgres && -x $dir/initdb && -x $dir/pg_ctl ]]; then
            printf '%s\n' "$dir"
            return 0
        fi
    done
    return 0
}

# Run a command as the PostgreSQL server owner: `postgres` when we are root, else ourselves.
# From / so that a working directory the postgres user cannot read does not matter.
as_pg() {
    if is_root; then
        (cd / && runuser -u postgres -- "$@")
    else
        "$@"
    fi
}

# Fail with a clear message when the postgres user cannot reach $1 (a directory).
check_pg_can_reach() {
    local target="$1" path="" part parts
    as_pg test -x "$target" -a -w "$target" && return 0
    IFS=/ read -r -a parts <<<"${target#/}"
    for part in "${parts[@]}"; do
        path="$path/$part"
        if ! as_pg test -x "$path"; then
            die "the postgres user cannot traverse $path (mode $(stat -c %A "$path"), owner $(stat -c %U "$path")); PostgreSQL runs as postgres and needs to reach $target. Allow it (e.g. chmod o+x $path) or set RUN_DIR to a directory it can reach."
        fi
    done
    die "the postgres user cannot write to $target"
}

pg_running() {
    [[ -n ${PG_BIN:-} && -d $PG_DATA ]] || return 1
    if is_root && ! id -u postgres >/dev/null 2>&1; then
        return 1
    fi
    as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" status >/dev/null 2>&1
}

# Port recorded in postmaster.pid (4th line) of the running server.
pg_running_port() {
    as_pg sed -n 4p "$PG_DATA/postmaster.pid" 2>/dev/null || true
}

pg_running_pid() {
    as_pg sed -n 1p "$PG_DATA/postmaster.pid" 2>/dev/null || true
}

ensure_pg_binaries() {
    PG_BIN="$(find_pg_bindir)"
    if [[ -z $PG_BIN ]]; then
        if is_root && command -v apt-get >/dev/null 2>&1; then
            # Debian may create and start its own cluster on 5432: harmless, we do not use it.
            apt_install postgresql
            PG_BIN="$(find_pg_bindir)"
        fi
        if [[ -z $PG_BIN ]]; then
            die "PostgreSQL server binaries (initdb, pg_ctl, postgres) not found. Install them, e.g. on Debian/Ubuntu: sudo apt-get install -y postgresql (binaries land in /usr/lib/postgresql/<version>/bin), or set DATABASE_URL to an existing server."
        fi
    fi
    if is_root; then
        command -v runuser >/dev/null 2>&1 || die "runuser (util-linux) is needed to run PostgreSQL as the postgres user"
        id -u postgres >/dev/null 2>&1 ||
            die "running as root but there is no 'postgres' system user to run PostgreSQL as (create it: useradd --system --home-dir /var/lib/postgresql --shell /bin/bash postgres)"
    fi
}

write_pg_conf() {
    # Settings applied at every start (included from postgresql.conf), so a changed PGPORT or
    # RUN_DIR takes effect on the next start.
    local sockdir="${PG_DIR//\'/\'\'}" conf="$PG_DATA/jobplatform.conf"
    {
        echo "# Written by scripts/services.sh at every start; edits are overwritten."
        echo "listen_addresses = '127.0.0.1'"
        echo "port = $PGPORT"
        echo "unix_socket_directories = '$sockdir'"
    } | as_pg tee "$conf" >/dev/null
}

init_pg() {
    mkdir -p "$PG_DIR"
    if is_root; then
        chown postgres: "$PG_DIR"
        [[ -d $PG_DATA ]] && chown -R postgres: "$PG_DATA"
    fi
    chmod 755 "$PG_DIR"
    is_root && check_pg_can_reach "$PG_DIR"
    if as_pg test -f "$PG_DATA/PG_VERSION"; then
        return 0
    fi
    log "initdb $PG_DATA ($("$PG_BIN/postgres" --version))"
    as_pg "$PG_BIN/initdb" -D "$PG_DATA" -U postgres --auth-local=trust --auth-host=trust \
        --encoding=UTF8 --no-locale >"$PG_DIR/initdb.log" 2>&1 ||
        {
            cat "$PG_DIR/initdb.log" >&2
            die "initdb failed (see above)"
        }
    # Trust local socket and 127.0.0.1 connections only.
    as_pg tee "$PG_DATA/pg_hba.conf" >/dev/null <<'EOF'
# Written by scripts/services.sh: development server, trust for local connections only.
# TYPE  DATABASE  USER  ADDRESS        METHOD
local   all       all                  trust
host    all       all   127.0.0.1/32   trust
EOF
    echo "include_if_exists = 'jobplatform.conf'" | as_pg tee -a "$PG_DATA/postgresql.conf" >/dev/null
}

wait_pg_ready() {
    local i
    for ((i = 0; i < 60; i++)); do
        if "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$PGPORT" -U postgres -d postgres; then
            return 0
        fi
        sleep 0.5
    done
    tail -n 30 "$PG_LOG" >&2 || true
    die "PostgreSQL did not become ready on 127.0.0.1:$PGPORT (log: $PG_LOG)"
}

create_pg_db() {
    local exists
    exists="$("$PG_BIN/psql" -X -q -h 127.0.0.1 -p "$PGPORT" -U postgres -d postgres -tAc \
        "SELECT 1 FROM pg_database WHERE datname = '$PG_DB'")"
    if [[ $exists != 1 ]]; then
        log "creating database $PG_DB"
        "$PG_BIN/createdb" -h 127.0.0.1 -p "$PGPORT" -U postgres "$PG_DB"
    fi
}

start_pg() {
    ensure_pg_binaries
    init_pg
    if pg_running; then
        local port pid
        port="$(pg_running_port)"
        pid="$(pg_running_pid)"
        if [[ -n $port && $port != "$PGPORT" ]]; then
            die "PostgreSQL from $PG_DATA already runs on port $port, not PGPORT=$PGPORT; run '$0 stop' first or set PGPORT=$port"
        fi
        log "postgres already running (pid $pid, 127.0.0.1:$PGPORT): reusing it"
    else
        write_pg_conf
        log "starting postgres on 127.0.0.1:$PGPORT (log: $PG_LOG)"
        as_pg touch "$PG_LOG"
        # 9>&-: the server must not inherit the lock file descriptor.
        if ! as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -l "$PG_LOG" -w -t 60 start >/dev/null 9>&-; then
            tail -n 30 "$PG_LOG" >&2 || true
            die "PostgreSQL failed to start (log: $PG_LOG); is port $PGPORT in use?"
        fi
    fi
    wait_pg_ready
    create_pg_db
}

stop_pg() {
    [[ -d $PG_DATA ]] || return 0
    PG_BIN="$(find_pg_bindir)"
    if pg_running; then
        as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -m fast -w -t 60 stop >/dev/null
        log "postgres stopped"
    fi
}

status_pg() {
    if [[ -n ${DATABASE_URL:-} && $DATABASE_URL != "$LOCAL_DATABASE_URL" ]]; then
        echo "postgres: external, DATABASE_URL=$(mask_url "$DATABASE_URL") (not managed here)"
    fi
    PG_BIN="$(find_pg_bindir)"
    if pg_running; then
        echo "postgres: running, pid $(pg_running_pid), 127.0.0.1:$(pg_running_port), database $PG_DB, data $PG_DATA, log $PG_LOG"
    elif [[ -d $PG_DATA ]]; then
        echo "postgres: stopped (data $PG_DATA)"
    else
        echo "postgres: not initialised ($PG_DATA)"
    fi
}

# ---------------------------------------------------------------------------------------------
# Redis

# True when process $1 exists and is not a zombie waiting to be reaped.
alive() {
    local state
    kill -0 "$1" 2>/dev/null || return 1
    state="$(sed -E 's/^.*\) ([A-Za-z]).*$/\1/' "/proc/$1/stat" 2>/dev/null || true)"
    [[ $state != Z ]]
}

redis_pid() {
    local pid
    [[ -r $REDIS_PIDFILE ]] || return 1
    pid="$(<"$REDIS_PIDFILE")"
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    alive "$pid" || return 1
    # Guard against a recycled pid.
    [[ "$(cat "/proc/$pid/comm" 2>/dev/null)" == redis-server* ]] || return 1
    printf '%s\n' "$pid"
}

redis_ping() {
    [[ "$(redis-cli -h 127.0.0.1 -p "$1" ping 2>/dev/null)" == PONG ]]
}

ensure_redis_binaries() {
    if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-cli >/dev/null 2>&1; then
        if is_root && command -v apt-get >/dev/null 2>&1; then
            # Debian may start its own redis on 6379: harmless, we do not use it.
            apt_install redis-server
        fi
        if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-cli >/dev/null 2>&1; then
            die "redis-server/redis-cli not found. Install them, e.g. on Debian/Ubuntu: sudo apt-get install -y redis-server, or set REDIS_URL to an existing server."
        fi
    fi
}

start_redis() {
    ensure_redis_binaries
    mkdir -p "$REDIS_DIR"
    local pid i
    if pid="$(redis_pid)"; then
        local port
        port="$(cat "$REDIS_PORTFILE" 2>/dev/null || true)"
        if [[ -n $port && $port != "$REDIS_PORT" ]]; then
            die "redis from $REDIS_DIR already runs on port $port, not REDIS_PORT=$REDIS_PORT; run '$0 stop' first or set REDIS_PORT=$port"
        fi
        log "redis already running (pid $pid, 127.0.0.1:$REDIS_PORT): reusing it"
    else
        rm -f "$REDIS_PIDFILE"
        log "starting redis on 127.0.0.1:$REDIS_PORT (log: $REDIS_LOGFILE)"
        redis-server --daemonize yes --bind 127.0.0.1 --port "$REDIS_PORT" --dir "$REDIS_DIR" \
            --pidfile "$REDIS_PIDFILE" --logfile "$REDIS_LOGFILE" --save "" --appendonly no \
            --protected-mode yes 9>&-
        echo "$REDIS_PORT" >"$REDIS_PORTFILE"
    fi
    for ((i = 0; i < 50; i++)); do
        if redis_ping "$REDIS_PORT"; then
            return 0
        fi
        sleep 0.2
    done
    tail -n 30 "$REDIS_LOGFILE" >&2 || true
    die "redis did not answer PING on 127.0.0.1:$REDIS_PORT (log: $REDIS_LOGFILE); is the port in use?"
}

stop_redis() {
    local pid port i
    pid="$(redis_pid)" || {
        rm -f "$REDIS_PIDFILE"
        return 0
    }
    port="$(cat "$REDIS_PORTFILE" 2>/dev/null || echo "$REDIS_PORT")"
    if command -v redis-cli >/dev/null 2>&1; then
        redis-cli -h 127.0.0.1 -p "$port" shutdown nosave >/dev/null 2>&1 || true
    fi
    for ((i = 0; i < 50; i++)); do
        alive "$pid" || break
        ((i == 10)) && kill -TERM "$pid" 2>/dev/null
        sleep 0.2
    done
    if alive "$pid"; then
        kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$REDIS_PIDFILE"
    log "redis stopped"
}

status_redis() {
    local pid
    if [[ -n ${REDIS_URL:-} && $REDIS_URL != "$LOCAL_REDIS_URL" ]]; then
        echo "redis: external, REDIS_URL=$(mask_url "$REDIS_URL") (not managed here)"
    fi
    if pid="$(redis_pid)"; then
        echo "redis: running, pid $pid, 127.0.0.1:$(cat "$REDIS_PORTFILE" 2>/dev/null || echo '?'), dir $REDIS_DIR, log $REDIS_LOGFILE"
    else
        echo "redis: stopped"
    fi
}

# ---------------------------------------------------------------------------------------------

lock() {
    if [[ ! -d $RUN_DIR ]]; then
        mkdir -p "$RUN_DIR"
        chmod 755 "$RUN_DIR"
    fi
    if command -v flock >/dev/null 2>&1; then
        exec 9>"$RUN_DIR/services.lock"
        flock -w 120 9 || die "another scripts/services.sh holds $RUN_DIR/services.lock"
    fi
}

usage() {
    echo "usage: $0 start|stop|status|restart-postgres" >&2
    exit 2
}

[[ $# -eq 1 ]] || usage
case "$1" in
start)
    lock
    ready=()
    if [[ -n ${DATABASE_URL:-} && $DATABASE_URL != "$LOCAL_DATABASE_URL" ]]; then
        log "DATABASE_URL is set ($(mask_url "$DATABASE_URL")): not starting a local postgres"
    else
        start_pg
        ready+=("$LOCAL_DATABASE_URL")
    fi
    if [[ -n ${REDIS_URL:-} && $REDIS_URL != "$LOCAL_REDIS_URL" ]]; then
        log "REDIS_URL is set ($(mask_url "$REDIS_URL")): not starting a local redis"
    else
        start_redis
        ready+=("$LOCAL_REDIS_URL")
    fi
    ((${#ready[@]} == 0)) || log "ready: ${ready[*]}"
    ;;
stop)
    [[ -d $RUN_DIR ]] || exit 0
    lock
    stop_pg
    stop_redis
    ;;
status)
    status_pg
    status_redis
    ;;
restart-postgres)
    # For the chaos tests: the platform must carry on across a database restart.
    lock
    stop_pg
    start_pg
    ;;
*) usage ;;
esac
