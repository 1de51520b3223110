#!/usr/bin/env bash
# The test suite's services, for `make test` (and so CI): the machine's PostgreSQL and Redis, started when down,
# then the command given (the suite), with HUB_DATABASE_URL and HUB_REDIS_URL pointing at them unless already set.
# Tests keep apart from a live hub and from other runs on the same Redis: each run has its own key prefix and
# Celery queue (tests/settings.py), and clears only its own keys.
set -euo pipefail

export HUB_DATABASE_URL="${HUB_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}"
export HUB_REDIS_URL="${HUB_REDIS_URL:-redis://127.0.0.1:6379/0}"

pg_up()    { pg_isready -h 127.0.0.1 -p 5432 -q; }
redis_up() { [ "$(redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null)" = "PONG" ]; }
missing()  { echo "FATAL: $1 is not installed: the suite needs it (Debian: apt-get install $2)" >&2; exit 1; }

command -v pg_isready >/dev/null || missing PostgreSQL postgresql
command -v redis-server >/dev/null || missing Redis redis-server

if ! pg_up; then
  echo "PostgreSQL is down; starting it"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql)" main start || true
  for _ in $(seq 30); do pg_up && break; sleep 1; done
fi
if ! redis_up; then
  echo "Redis is down; starting it"
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no || true
  for _ in $(seq 30); do redis_up && break; sleep 1; done
fi
pg_up    || { echo "FATAL: PostgreSQL at 127.0.0.1:5432 is unreachable" >&2; exit 1; }
redis_up || { echo "FATAL: Redis at 127.0.0.1:6379 is unreachable" >&2; exit 1; }
echo "tests on PostgreSQL ($HUB_DATABASE_URL) and Redis ($HUB_REDIS_URL)"

exec "$@"
