#!/usr/bin/env bash
# Start (or stop) a throwaway PostgreSQL server on loopback for the test suite.
#   .ci/postgres.sh start DIR PORT   -> prints the URL to use as AGENTSTORE_TEST_POSTGRES_URL
#   .ci/postgres.sh stop DIR
# Installs Debian's postgresql package when its binaries are missing. Runs the server as the
# 'postgres' system user (initdb refuses root), with its own data folder and port.
set -euo pipefail
action=$1
dir=$2
port=${3:-54329}

find_bin() {
  local d
  for d in /usr/lib/postgresql/*/bin; do
    [ -x "$d/initdb" ] && { echo "$d"; return 0; }
  done
  return 1
}

if [ "$action" = stop ]; then
  bin=$(find_bin) || exit 0
  if [ -f "$dir/data/postmaster.pid" ]; then
    su postgres -s /bin/sh -c "'$bin/pg_ctl' -D '$dir/data' -m fast -w stop" >/dev/null 2>&1 || true
  fi
  exit 0
fi

if ! bin=$(find_bin); then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq postgresql >/dev/null
  bin=$(find_bin)
fi

mkdir -p "$dir"
chown postgres "$dir"
chmod 700 "$dir"
if [ ! -f "$dir/data/PG_VERSION" ]; then
  su postgres -s /bin/sh -c "'$bin/initdb' -D '$dir/data' -U postgres -A trust --no-sync -E UTF8" >/dev/null
fi
su postgres -s /bin/sh -c "'$bin/pg_ctl' -D '$dir/data' -l '$dir/server.log' -w \
  -o \"-c listen_addresses=127.0.0.1 -p $port -k '$dir' -c fsync=off -c full_page_writes=off -c max_connections=200\" start" >/dev/null
echo "postgresql+asyncpg://postgres@127.0.0.1:$port/postgres"
