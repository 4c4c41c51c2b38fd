#!/usr/bin/env bash
# Build the server-backed tests' default server: FerretDB 2.5.0 on PostgreSQL 15 with DocumentDB
# (FerretDB's fork, v0.106.0-ferretdb-2.5.0). Unlike FerretDB 1.x, its find-and-modify is atomic
# (PostgreSQL row locks) and its compound indexes serve query filters.
#
# Usage: tests/servers/install-documentdb.sh [DIR]   (default: <repo>/.cache/documentdb)
# Result: DIR/bin/ferretdb, and the extensions installed into PostgreSQL 15's own folders (needs
# root: PostgreSQL 15 loads extensions only from there). Safe to run again and in parallel: it does
# nothing when a working build is there.
#
# Sources: the tarballs in <repo>/../shared/vendor when that folder exists (checked against its
# SHA256SUMS), else the same upstream tags from GitHub. FerretDB comes from the Go module proxy.
#
# Why each odd step is there:
#  - pgvector: bookworm has no postgresql-15-pgvector; DocumentDB needs the `vector` extension.
#  - pg_cron: bookworm's 1.4.2 rejects DocumentDB's '2 seconds' schedules; 1.6.3 is built instead.
#  - libbson: bookworm's 1.23 lacks BSON_SUBTYPE_SENSITIVE; 1.28.0 is built statically into DIR.
#  - intelmathlib.pc: Debian's libintelrdfpmath-dev ships no pkg-config file; DocumentDB asks for one.
#  - libkrb5-dev: pg_documentdb includes gssapi/gssapi.h.
#  - FerretDB v2.5.0 with Go >= 1.25: cmd/ferretdb defines setGOMAXPROCS only under `!go1.25`; a
#    one-line shim adds it.
#  - build/version/version.txt is filled by FerretDB's release tooling, not by the module.
set -euo pipefail

ferretdb_version=v2.5.0
documentdb_tag=v0.106.0-ferretdb-2.5.0
libbson_version=1.28.0
pg_cron_tag=v1.6.3
pgvector_tag=v0.8.0
pg_bin=/usr/lib/postgresql/15/bin
jobs=${JOBS:-$(nproc)}
stamp_text="ferretdb $ferretdb_version documentdb $documentdb_tag libbson $libbson_version pg_cron $pg_cron_tag pgvector $pgvector_tag"

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
vendor=${SMS_OUTBOX_VENDOR:-"$repo_root/../shared/vendor"}
dest=${1:-"$repo_root/.cache/documentdb"}
mkdir -p "$dest"
dest=$(cd "$dest" && pwd)
stamp="$dest/.installed"

fail() {
    echo "install-documentdb: $*" >&2
    exit 1
}

# Parallel test workers may all find the build missing; let one build and the others reuse it.
exec 9>"$dest/.install.lock"
flock 9

installed() {
    [[ -f "$stamp" && "$(cat "$stamp")" == "$stamp_text" ]] &&
        "$dest/bin/ferretdb" --version >/dev/null 2>&1 &&
        [[ -x "$pg_bin/initdb" ]] &&
        [[ -f "$("$pg_bin/pg_config" --sharedir)/extension/documentdb.control" ]] &&
        [[ -f "$("$pg_bin/pg_config" --pkglibdir)/pg_documentdb.so" ]] &&
        [[ -f "$("$pg_bin/pg_config" --pkglibdir)/pg_cron.so" ]] &&
        [[ -f "$("$pg_bin/pg_config" --pkglibdir)/vector.so" ]]
}
if installed; then
    echo "install-documentdb: FerretDB $ferretdb_version on DocumentDB $documentdb_tag already at $dest"
    exit 0
fi
rm -f "$stamp"

[[ $(id -u) -eq 0 ]] || fail "needs root to install packages and PostgreSQL extensions"
command -v apt-get >/dev/null 2>&1 || fail "needs apt-get (Debian 12) to install PostgreSQL 15"

go=$(command -v go || true)
[[ -n "$go" ]] || { [[ -x /usr/local/go/bin/go ]] && go=/usr/local/go/bin/go; } ||
    fail "'go' is not on PATH and /usr/local/go/bin/go does not exist"

packages=(postgresql-15 postgresql-server-dev-15 postgresql-15-rum postgresql-15-postgis-3
    libpcre2-dev libintelrdfpmath-dev libkrb5-dev libicu-dev build-essential cmake pkg-config
    xz-utils ca-certificates curl)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
    # Otherwise the package creates and starts a 'main' cluster on port 5432 that nothing uses.
    mkdir -p /etc/postgresql-common/createcluster.d
    echo 'create_main_cluster = false' >/etc/postgresql-common/createcluster.d/sms-outbox-tests.conf
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

src="$dest/src"
logs="$dest/logs"
rm -rf "$src"
mkdir -p "$src" "$logs" "$dest/bin" "$dest/pkgconfig"

unpack() {  # ARCHIVE DIR: unpack into DIR whatever the archive's top folder is called
    mkdir -p "$2"
    tar -xf "$1" -C "$2" --strip-components=1
}
if [[ -d "$vendor" ]]; then
    echo "install-documentdb: sources from $vendor"
    (cd "$vendor" && sha256sum -c --quiet SHA256SUMS) || fail "checksums in $vendor/SHA256SUMS do not match"
    unpack "$vendor/documentdb-$documentdb_tag.tar.xz" "$src/documentdb"
    unpack "$vendor/libbson-$libbson_version.tar.xz" "$src/mongo-c-driver"
    unpack "$vendor/pg_cron-${pg_cron_tag#v}.tar.xz" "$src/pg_cron"
    unpack "$vendor/pgvector-${pgvector_tag#v}.tar.xz" "$src/pgvector"
else
    echo "install-documentdb: no $vendor; fetching sources from GitHub"
    fetch() {  # URL DIR
        curl -fsSL --retry 3 -o "$src/download.tar.gz" "$1" || fail "cannot download $1"
        unpack "$src/download.tar.gz" "$2"
        rm "$src/download.tar.gz"
    }
    fetch "https://github.com/FerretDB/documentdb/archive/refs/tags/$documentdb_tag.tar.gz" "$src/documentdb"
    # The release tarball, unlike the tag's archive, carries VERSION_CURRENT for the build.
    fetch "https://github.com/mongodb/mongo-c-driver/releases/download/$libbson_version/mongo-c-driver-$libbson_version.tar.gz" \
        "$src/mongo-c-driver"
    fetch "https://github.com/citusdata/pg_cron/archive/refs/tags/$pg_cron_tag.tar.gz" "$src/pg_cron"
    fetch "https://github.com/pgvector/pgvector/archive/refs/tags/$pgvector_tag.tar.gz" "$src/pgvector"
fi

step() {  # NAME COMMAND...: run a build step with its output in DIR/logs/NAME.log, failing loudly
    local name=$1
    shift
    echo "install-documentdb: $name"
    # Not under `if` or `||`: there bash would ignore `set -e` inside the step.
    local status
    set +e
    (set -e && "$@") >"$logs/$name.log" 2>&1
    status=$?
    set -e
    if ((status != 0)); then
        tail -n 40 "$logs/$name.log" >&2
        fail "$name failed (exit $status); full log in $logs/$name.log"
    fi
}

build_libbson() {
    mkdir -p "$src/mongo-c-driver/b"
    cd "$src/mongo-c-driver/b"
    cmake -DENABLE_MONGOC=OFF -DENABLE_TESTS=OFF -DENABLE_EXAMPLES=OFF -DENABLE_UNINSTALL=OFF \
        -DENABLE_ICU=OFF -DENABLE_MAN_PAGES=OFF -DENABLE_HTML_DOCS=OFF -DCMAKE_C_FLAGS=-fPIC \
        -DCMAKE_BUILD_TYPE=Release -DBUILD_VERSION="$libbson_version" \
        -DCMAKE_INSTALL_PREFIX="$dest/libbson" ..
    make -j"$jobs" install
}
step libbson build_libbson

cat >"$dest/pkgconfig/intelmathlib.pc" <<'EOF'
prefix=/usr
libdir=${prefix}/lib/x86_64-linux-gnu
includedir=${prefix}/include
Name: intelmathlib
Description: Intel Decimal Floating point math library (Debian build)
Version: 2.0 Update 2
Cflags: -I${includedir}
Libs: ${libdir}/libbidgcc000.a
EOF
export PKG_CONFIG_PATH="$dest/libbson/lib/pkgconfig:$dest/pkgconfig"

pg_make() {  # DIR: build and install one PostgreSQL extension
    make -C "$1" -j"$jobs" with_llvm=no PG_CONFIG="$pg_bin/pg_config"
    make -C "$1" install with_llvm=no PG_CONFIG="$pg_bin/pg_config"
}
step pgvector pg_make "$src/pgvector"
step pg_cron pg_make "$src/pg_cron"
# pg_documentdb links against pg_documentdb_core, so core is installed first.
step pg_documentdb_core pg_make "$src/documentdb/pg_documentdb_core"
step pg_documentdb pg_make "$src/documentdb/pg_documentdb"

build_ferretdb() {
    local module
    module=$("$go" mod download -json "github.com/FerretDB/FerretDB/v2@$ferretdb_version" |
        python3 -c 'import json, sys; print(json.load(sys.stdin)["Dir"])')
    cp -R "$module" "$src/ferretdb"
    chmod -R u+w "$src/ferretdb"
    printf '%s' "$ferretdb_version" >"$src/ferretdb/build/version/version.txt"
    cat >"$src/ferretdb/cmd/ferretdb/gomaxprocs_go125.go" <<'EOF'
//go:build go1.25

package main

import "log/slog"

func setGOMAXPROCS(logger *slog.Logger) {}
EOF
    cd "$src/ferretdb"
    # Build to a temporary name so an interrupted build never leaves a broken binary in place.
    GOFLAGS=-buildvcs=false "$go" build -o "$dest/bin/ferretdb.tmp" ./cmd/ferretdb
    mv "$dest/bin/ferretdb.tmp" "$dest/bin/ferretdb"
}
step ferretdb build_ferretdb

# The sources are only needed to build; the Go module cache keeps FerretDB's.
rm -rf "$src"
printf '%s' "$stamp_text" >"$stamp"
installed || fail "the build finished but the result does not work; see $logs"
echo "install-documentdb: $("$dest/bin/ferretdb" --version | head -1) on DocumentDB $documentdb_tag at $dest"
