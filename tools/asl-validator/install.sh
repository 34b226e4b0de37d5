#!/bin/sh
# Install the asl-validator (npm registry) for the machine's Node.js into tools/asl-validator/node,
# a project-local folder (git-ignored); prints the path of its command. Tests call this and skip,
# saying why, when it fails (no node/npm, registry unreachable).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
version=${ASL_VALIDATOR_VERSION:-4.0.0}
bin="$here/node/node_modules/.bin/asl-validator"
if [ -x "$bin" ] && [ "$(cat "$here/node/.version" 2>/dev/null)" = "$version" ]; then
    echo "$bin"; exit 0
fi
command -v node >/dev/null || { echo "node is not installed" >&2; exit 3; }
command -v npm >/dev/null || { echo "npm is not installed" >&2; exit 3; }
mkdir -p "$here/node"
npm install --prefix "$here/node" --no-audit --no-fund --loglevel=error \
    "asl-validator@$version" >&2
echo "$version" > "$here/node/.version"
echo "$bin"
