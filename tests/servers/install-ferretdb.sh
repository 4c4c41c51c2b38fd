#!/usr/bin/env bash
# Build FerretDB for the server-backed tests, because the Go module proxy is the only source we can
# reach and `go install` of v1.24.2 yields a binary that panics on start: the release's
# build/version/version.txt is filled in by FerretDB's own release tooling, not by the module.
#
# Usage: tests/servers/install-ferretdb.sh [DIR]   (default: <repo>/.cache/ferretdb)
# Result: DIR/bin/ferretdb. Safe to run again; it does nothing when a working binary is there.
set -euo pipefail

version=v1.24.2
repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
dest=${1:-"$repo_root/.cache/ferretdb"}
mkdir -p "$dest/bin"
dest=$(cd "$dest" && pwd)
bin="$dest/bin/ferretdb"

# Parallel test workers may all find the binary missing; let one build and the others reuse it.
if command -v flock >/dev/null 2>&1; then
    exec 9>"$dest/.install.lock"
    flock 9
fi

if [[ -x "$bin" ]] && "$bin" --version >/dev/null 2>&1; then
    echo "ferretdb $version already at $bin"
    exit 0
fi

if ! command -v go >/dev/null 2>&1; then
    if [[ -x /usr/local/go/bin/go ]]; then
        PATH="/usr/local/go/bin:$PATH"
    else
        echo "install-ferretdb: 'go' is not on PATH and /usr/local/go/bin/go does not exist" >&2
        exit 1
    fi
fi

src=$(go mod download -json "github.com/FerretDB/FerretDB@$version" \
    | python3 -c 'import json, sys; print(json.load(sys.stdin)["Dir"])')

work=$(mktemp -d)
trap 'chmod -R u+w "$work" 2>/dev/null || true; rm -rf "$work"' EXIT
cp -R "$src" "$work/ferretdb"
chmod -R u+w "$work/ferretdb"
printf '%s\n' "$version" >"$work/ferretdb/build/version/version.txt"

# Build to a temporary name first so an interrupted build never leaves a broken binary in place.
(cd "$work/ferretdb" && GOFLAGS=-buildvcs=false go build -o "$bin.tmp" ./cmd/ferretdb)
mv "$bin.tmp" "$bin"
"$bin" --version >/dev/null
echo "ferretdb $version installed at $bin"
