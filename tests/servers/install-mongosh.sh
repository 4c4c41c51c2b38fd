#!/usr/bin/env bash
# Installs mongosh from npm into .cache/mongosh, for the test that runs the README's mongosh
# examples. Does nothing when mongosh is on PATH or already installed there.
set -euo pipefail
cd "$(dirname "$0")/../.."
if command -v mongosh >/dev/null || [ -x .cache/mongosh/node_modules/.bin/mongosh ]; then
    exit 0
fi
if ! command -v npm >/dev/null; then
    echo "install-mongosh: npm is not installed; the mongosh README test will be skipped" >&2
    exit 0
fi
mkdir -p .cache/mongosh
npm install --prefix .cache/mongosh --no-audit --no-fund --loglevel=error mongosh@2
