#!/usr/bin/env bash
# Installs oidc-provider (the certified OpenID Connect provider for Node) from npm into
# .cache/oidc-provider, for the web app's sign-in tests. Does nothing when it is there already.
set -euo pipefail
cd "$(dirname "$0")/../.."
if [ -f .cache/oidc-provider/node_modules/oidc-provider/package.json ]; then
    exit 0
fi
if ! command -v npm >/dev/null; then
    echo "install-oidc-provider: npm is not installed; the web app's sign-in tests will be skipped" >&2
    exit 0
fi
mkdir -p .cache/oidc-provider
npm install --prefix .cache/oidc-provider --no-audit --no-fund --loglevel=error oidc-provider@9
