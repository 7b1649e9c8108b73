#!/usr/bin/env bash
# A class's tracking server: `mlflow server` on a PostgreSQL store, with served artifacts and MLflow's accounts.
#
#   MLFLOW_ADMIN_PASSWORD_FILE=~/mlflow-admin.txt scripts/tracking-server.sh --students students.txt
#
# --students FILE  one account a line, `NAME` or `NAME PASSWORD`; each gets an experiment named NAME that only
#                  they can change (everyone can read every experiment). New passwords are generated into
#                  DATA/student-passwords.txt (readable by you only); existing accounts are left as they are.
# --host HOST      127.0.0.1 (default): this machine only. Anything else exposes it: read docs/class-server.md first.
# --port PORT      5000 (default)
# --data DIR       where PostgreSQL's files, the artifacts and the server's secrets live
#                  (default: outputs/tracking-server in the project)
# --workers N      the server's worker processes (default 4)
# The admin's password comes from MLFLOW_ADMIN_PASSWORD or the file named by MLFLOW_ADMIN_PASSWORD_FILE, never
# from here; the Flask secret from MLFLOW_FLASK_SERVER_SECRET_KEY, or one generated once into DATA.
# Ctrl-C stops the server and its PostgreSQL; the data stays for the next start.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
host=127.0.0.1 port=5000 data="$root/outputs/tracking-server" students="" workers=4
while [ $# -gt 0 ]; do
    case "$1" in
        --host) host=$2 ;; --port) port=$2 ;; --data) data=$2 ;; --students) students=$2 ;; --workers) workers=$2 ;;
        *) echo "tracking-server: unknown option $1 (see the top of $0)" >&2; exit 2 ;;
    esac
    shift 2
done
fail() { echo "tracking-server: $*" >&2; exit 1; }
python="$root/.venv/bin/python"
[ -x "$python" ] || python=$(command -v python3)

admin_password=${MLFLOW_ADMIN_PASSWORD:-}
if [ -z "$admin_password" ] && [ -n "${MLFLOW_ADMIN_PASSWORD_FILE:-}" ]; then
    [ -r "$MLFLOW_ADMIN_PASSWORD_FILE" ] || fail "cannot read MLFLOW_ADMIN_PASSWORD_FILE=$MLFLOW_ADMIN_PASSWORD_FILE"
    admin_password=$(head -n 1 "$MLFLOW_ADMIN_PASSWORD_FILE")
fi
[ -n "$admin_password" ] || fail "set MLFLOW_ADMIN_PASSWORD, or MLFLOW_ADMIN_PASSWORD_FILE to a file holding it"
[ "$admin_password" != "password1234" ] || fail "the admin password is MLflow's shipped default: choose another"
[ ${#admin_password} -ge 12 ] || fail "the admin password is shorter than 12 characters: choose a longer one"
[ -z "$students" ] || [ -r "$students" ] || fail "cannot read the student list $students"

pg_bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
if [ -z "$pg_bin" ]; then
    echo "tracking-server: installing postgresql (Debian)"
    sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
    pg_bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
fi
# PostgreSQL refuses to run as root: as root, its files and processes belong to the postgres account.
as_pg() { if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

mkdir -p "$data"
chmod 700 "$data"
data=$(cd "$data" && pwd)
socket="$data/pg-socket"  # PostgreSQL listens on this Unix socket only, in a folder only its owner can enter
mkdir -p "$data/pg" "$socket" "$data/artifacts"
[ "$(id -u)" -ne 0 ] || chown postgres: "$data/pg" "$socket" "$data"
chmod 700 "$data/pg" "$socket"
if [ ! -f "$data/pg/PG_VERSION" ]; then
    as_pg "$pg_bin/initdb" -D "$data/pg" -U mlflow --auth=trust -E UTF8 >"$data/initdb.log"
fi
as_pg "$pg_bin/pg_ctl" -D "$data/pg" -l "$data/postgres.log" -w -s \
    -o "-c listen_addresses='' -k $socket" start || fail "PostgreSQL did not start: see $data/postgres.log"

server=""
stop() {
    [ -z "$server" ] || { kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; }
    as_pg "$pg_bin/pg_ctl" -D "$data/pg" -w -s -m fast stop || true
}
trap stop EXIT
trap 'exit 130' INT TERM

for database in mlflow mlflow_auth; do
    exists=$(as_pg "$pg_bin/psql" -h "$socket" -U mlflow -d postgres -tAc \
        "SELECT 1 FROM pg_database WHERE datname = '$database'")
    [ "$exists" = 1 ] || as_pg "$pg_bin/createdb" -h "$socket" -U mlflow "$database"
done

secret_file="$data/flask-secret"
if [ -z "${MLFLOW_FLASK_SERVER_SECRET_KEY:-}" ]; then
    [ -f "$secret_file" ] || (umask 077 && "$python" -c "import secrets; print(secrets.token_hex(32))" >"$secret_file")
    MLFLOW_FLASK_SERVER_SECRET_KEY=$(cat "$secret_file")
fi
# MLflow's accounts: who may do what is kept in its own database; READ lets everyone read every experiment,
# and whoever creates an experiment may change it. The admin account is created on the first start.
# Each worker remembers a password it accepted for 60 s instead of checking its hash (scrypt, ~0.1 s of a core)
# at every request, of which a sweep sends dozens per run: a changed password or a removed account takes up to
# a minute to apply everywhere.
auth_config="$data/basic-auth.ini"
(umask 077 && cat >"$auth_config" <<INI
[mlflow]
default_permission = READ
database_uri = postgresql+psycopg2://mlflow@/mlflow_auth?host=$socket
admin_username = admin
admin_password = $admin_password
authorization_function = mlflow.server.auth:authenticate_request_basic_auth
auth_cache_ttl_seconds = 60
INI
)
[ "$host" = 127.0.0.1 ] || [ "$host" = localhost ] || [ "$host" = ::1 ] ||
    echo "tracking-server: listening on $host: anyone who reaches it can try passwords, sent in clear over HTTP;" \
        "put it behind HTTPS (see docs/class-server.md)" >&2

# MLflow's job runner (GenAI evaluation jobs: eight more processes, ~2 GB) serves nothing this suite logs.
MLFLOW_SERVER_ENABLE_JOB_EXECUTION=${MLFLOW_SERVER_ENABLE_JOB_EXECUTION:-false} \
    MLFLOW_AUTH_CONFIG_PATH="$auth_config" MLFLOW_FLASK_SERVER_SECRET_KEY="$MLFLOW_FLASK_SERVER_SECRET_KEY" \
    "$python" -m mlflow server --app-name basic-auth --host "$host" --port "$port" --workers "$workers" \
    --backend-store-uri "postgresql+psycopg2://mlflow@/mlflow?host=$socket" --artifacts-destination "$data/artifacts" \
    >"$data/server.log" 2>&1 &
server=$!
uri="http://$host:$port"
for _ in $(seq 120); do
    "$python" -c "import urllib.request; urllib.request.urlopen('$uri/health', timeout=1)" 2>/dev/null && break
    kill -0 "$server" 2>/dev/null || fail "mlflow server stopped: see $data/server.log"
    sleep 1
done

if [ -n "$students" ]; then
    MLFLOW_TRACKING_USERNAME=admin MLFLOW_TRACKING_PASSWORD="$admin_password" \
        "$python" "$root/scripts/add_students.py" "$uri" "$students" "$data/student-passwords.txt"
fi
echo "tracking-server: MLflow on $uri (PostgreSQL and artifacts in $data); Ctrl-C stops it"
wait "$server"
