#!/usr/bin/env bash
# Install the PostgreSQL server binaries for FerretDB's postgresql backend in the server-backed tests.
# FerretDB's SQLite backend filters every query in Go over the whole collection; on PostgreSQL it
# pushes equality filters down to SQL, which keeps the multi-daemon tests to seconds, not minutes.
# The tests start and delete their own cluster; this script only installs the binaries.
#
# Usage: tests/servers/install-postgresql.sh
# Safe to run again: it does nothing when the binaries are there. Without root or apt-get it says
# why and exits 0, and the tests fall back to FerretDB's SQLite backend.
set -euo pipefail

if compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || command -v initdb >/dev/null 2>&1; then
    echo "install-postgresql: PostgreSQL server binaries already installed"
    exit 0
fi

fallback="FerretDB will use its SQLite backend, and the multi-daemon tests will take minutes"
if [[ $(id -u) -ne 0 ]]; then
    echo "install-postgresql: not installing PostgreSQL without root; $fallback" >&2
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-postgresql: no apt-get to install PostgreSQL with; $fallback" >&2
    exit 0
fi

# Otherwise the package creates and starts a 'main' cluster on port 5432 that nothing uses.
mkdir -p /etc/postgresql-common/createcluster.d
echo 'create_main_cluster = false' >/etc/postgresql-common/createcluster.d/sms-outbox-tests.conf

apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql
echo "install-postgresql: installed $(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)"
