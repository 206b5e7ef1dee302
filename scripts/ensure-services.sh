#!/usr/bin/env bash
# Starts the local servers the tests use when they are not running. Loopback only.
#
# PostgreSQL: the machine's server on 127.0.0.1:5432 when user postgres can log in without a
# password; otherwise (password auth, no server, another port) a throw-away cluster of our own
# in .services/pg with trust auth on a free loopback port. Redis: the machine's 6379 when it is
# Redis 7 or newer; otherwise our own on a free port. The addresses chosen are written to
# .services/env, which `make test` reads, so tests never touch a server they were not given.
# Never stops or reconfigures a server it did not start. ENSURE_SERVICES_OWN_PG=1 /
# ENSURE_SERVICES_OWN_REDIS=1 take the own-server paths on purpose (its test does).
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .services
env_file=.services/env
: >"$env_file"

say() { echo "ensure-services: $*"; }
die() { echo "ensure-services: $*" >&2; exit 1; }

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# ------------------------------------------------------------------ packages
need_apt=()
command -v redis-server >/dev/null || need_apt+=(redis-server)
command -v redis-cli >/dev/null || need_apt+=(redis-tools)
command -v pg_ctlcluster >/dev/null || command -v initdb >/dev/null || need_apt+=(postgresql)
# the pgbouncer tests start their own pgbouncer (transaction pooling) in front of PostgreSQL
command -v pgbouncer >/dev/null || [ -x /usr/sbin/pgbouncer ] || need_apt+=(pgbouncer)
python3 -c 'import ensurepip' 2>/dev/null || need_apt+=(python3-venv)
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    die "missing packages: ${need_apt[*]}. Install them as root (apt-get install ${need_apt[*]}) and run again."
  fi
  say "installing ${need_apt[*]}"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}"
fi

pg_bin() {
  local dir
  dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1)
  [ -n "$dir" ] || die "no PostgreSQL binaries under /usr/lib/postgresql"
  echo "$dir"
}

# ------------------------------------------------------------------ PostgreSQL
pg_ok() { PGCONNECT_TIMEOUT=3 psql -w -h 127.0.0.1 -p "$1" -U postgres -d postgres -tAc 'SELECT 1' >/dev/null 2>&1; }

pg_port=5432
if ! pg_isready -h 127.0.0.1 -p 5432 -q && [ "$(id -u)" -eq 0 ] && command -v pg_ctlcluster >/dev/null; then
  say "starting the machine's PostgreSQL"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
  for _ in $(seq 1 60); do pg_isready -h 127.0.0.1 -p 5432 -q && break; sleep 0.5; done
fi
if [ -n "${ENSURE_SERVICES_OWN_PG:-}" ] || ! pg_ok 5432; then
  # Password auth, a missing role, or no server: run our own cluster with trust auth. Its
  # files live in a temp folder the postgres user can reach (a checkout under /root cannot).
  bin=$(pg_bin)
  own=$(cat .services/pg-dir 2>/dev/null || mktemp -d "${TMPDIR:-/tmp}/agent-session-store-pg.XXXXXX")
  echo "$own" >.services/pg-dir
  pg_port=$(cat "$own/port" 2>/dev/null || free_port)
  if ! pg_ok "$pg_port"; then
    run_as=()
    if [ "$(id -u)" -eq 0 ]; then
      id postgres >/dev/null 2>&1 || die "no 'postgres' system user to run our own cluster as"
      run_as=(runuser -u postgres --)
      chown postgres "$own"
    fi
    if [ ! -f "$own/data/PG_VERSION" ]; then
      say "PostgreSQL on 127.0.0.1:5432 refused user postgres without a password; creating a throw-away cluster in $own"
      "${run_as[@]}" "$bin/initdb" -D "$own/data" -U postgres --auth=trust -E UTF8 >/dev/null
    fi
    echo "$pg_port" >"$own/port"
    "${run_as[@]}" "$bin/pg_ctl" -D "$own/data" -l "$own/log" -w \
      -o "-c listen_addresses=127.0.0.1 -c port=$pg_port -c unix_socket_directories=$own" start >/dev/null
  fi
  pg_ok "$pg_port" || die "could not reach our own PostgreSQL on 127.0.0.1:$pg_port (see $own/log)"
fi
psql -w -h 127.0.0.1 -p "$pg_port" -U postgres -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname='test'" | grep -q 1 \
  || psql -w -h 127.0.0.1 -p "$pg_port" -U postgres -d postgres -qc "CREATE DATABASE test"
echo "ASS_TEST_PG_DSN=postgresql://postgres@127.0.0.1:$pg_port/test" >>"$env_file"

# ------------------------------------------------------------------ Redis
version=$(redis-server --version | sed -n 's/.*v=\([0-9][0-9.]*\).*/\1/p')
major=${version%%.*}
if [ -z "$major" ] || [ "$major" -lt 7 ]; then
  die "redis-server ${version:-of unknown version} is too old: the store needs Redis 7 or newer (install a newer redis-server)"
fi
redis_port=6379
if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 && [ "$(id -u)" -eq 0 ]; then
  say "starting the machine's Redis"
  mkdir -p /var/lib/redis /var/log/redis
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log
  for _ in $(seq 1 60); do redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 && break; sleep 0.5; done
fi
server_major=$(redis-cli -h 127.0.0.1 -p 6379 info server 2>/dev/null | sed -n 's/^redis_version:\([0-9]*\).*/\1/p')
if [ -n "${ENSURE_SERVICES_OWN_REDIS:-}" ] || [ -z "$server_major" ] || [ "$server_major" -lt 7 ]; then
  # Not reachable, or an older server we must not touch: our own, kept in .services/redis.
  own=.services/redis
  mkdir -p "$own"
  redis_port=$(cat "$own/port" 2>/dev/null || free_port)
  if ! redis-cli -h 127.0.0.1 -p "$redis_port" ping >/dev/null 2>&1; then
    say "starting our own Redis on 127.0.0.1:$redis_port"
    redis-server --daemonize yes --bind 127.0.0.1 --port "$redis_port" --save "" --appendonly no \
      --dir "$PWD/$own" --logfile "$PWD/$own/log"
    for _ in $(seq 1 60); do redis-cli -h 127.0.0.1 -p "$redis_port" ping >/dev/null 2>&1 && break; sleep 0.2; done
  fi
  echo "$redis_port" >"$own/port"
fi
echo "ASS_TEST_REDIS_URL=redis://127.0.0.1:$redis_port/0" >>"$env_file"
say "services ready: PostgreSQL 127.0.0.1:$pg_port, Redis 127.0.0.1:$redis_port (see $env_file)"
