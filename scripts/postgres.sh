#!/usr/bin/env bash
# A local PostgreSQL server, from Debian's `postgresql` package, for Optuna studies that several workers share
# (rl-zoo's `-optimize --storage URL --study-name NAME`). Listens on 127.0.0.1 only, trusts local connections.
#
#   bash scripts/postgres.sh start [DATA_DIR] [PORT]   # initialises DATA_DIR once, starts, prints the storage URL
#   bash scripts/postgres.sh stop [DATA_DIR]
#
# DATA_DIR defaults to .postgres, PORT to 5433. Run as root, the server runs as the `postgres` user (PostgreSQL
# refuses root): DATA_DIR is then given to that user, and its parent folders must be traversable by it.
set -euo pipefail

action=${1:-}
data_dir=${2:-.postgres}
port=${3:-5433}
bin_dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
if [ -z "$bin_dir" ]; then
    echo "error: PostgreSQL is not installed (Debian: apt-get install postgresql)." >&2
    exit 1
fi

as_owner() {
    if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

case "$action" in
start)
    mkdir -p "$data_dir"
    data_dir=$(cd "$data_dir" && pwd)
    if [ "$(id -u)" = 0 ]; then chown postgres: "$data_dir" && chmod 700 "$data_dir"; fi
    if [ ! -f "$data_dir/PG_VERSION" ]; then
        as_owner "$bin_dir/initdb" --pgdata "$data_dir" --username optuna --auth trust > /dev/null
    fi
    if ! as_owner "$bin_dir/pg_ctl" --pgdata "$data_dir" status > /dev/null; then
        as_owner "$bin_dir/pg_ctl" --pgdata "$data_dir" --log "$data_dir/server.log" --wait \
            -o "-p $port -k $data_dir -c listen_addresses=127.0.0.1" start > /dev/null
    fi
    if [ -z "$(as_owner "$bin_dir/psql" -h 127.0.0.1 -p "$port" -U optuna -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = 'optuna'")" ]; then
        as_owner "$bin_dir/createdb" -h 127.0.0.1 -p "$port" -U optuna optuna
    fi
    echo "postgresql+psycopg2://optuna@127.0.0.1:$port/optuna"
    ;;
stop)
    as_owner "$bin_dir/pg_ctl" --pgdata "$data_dir" --mode fast --wait stop > /dev/null
    ;;
*)
    echo "usage: bash scripts/postgres.sh {start|stop} [DATA_DIR] [PORT]" >&2
    exit 2
    ;;
esac
