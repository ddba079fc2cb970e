#!/usr/bin/env bash
# Builds one command of a Go module release into a binary, the way `go install pkg@version`
# would — but also for modules whose go.mod has `replace` directives, which `go install`
# refuses: a throw-away main module requires the release and repeats its non-local
# replace lines, so the build resolves the same dependency versions the release does.
#
#   hack/go-build-module.sh MODULE VERSION PACKAGE OUTPUT [LDFLAGS]
#
# MODULE is the module path (github.com/argoproj/argo-cd/v3), PACKAGE the command's
# import path inside it, OUTPUT the binary to write. The throw-away module lives in
# OUTPUT's directory under .build-<name>; nothing of it is committed.
set -euo pipefail

module=$1 version=$2 package=$3 output=$4 ldflags=${5:--s -w}
export GOFLAGS=-mod=mod GOTOOLCHAIN=${GOTOOLCHAIN:-local}

src=$(cd /tmp && go mod download -json "$module@$version" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')
[ -n "$src" ] || { echo "cannot download $module@$version" >&2; exit 1; }

build_dir="$(dirname "$output")/.build-$(basename "$output")"
rm -rf "$build_dir" && mkdir -p "$build_dir"
cd "$build_dir"
printf 'module testmesh.local/build\n\ngo %s\n' "$(sed -n 's/^go //p' "$src/go.mod")" >go.mod

# `old [v] => new v` lines, single or inside a `replace ( … )` block; local paths skipped.
mapfile -t replaces < <(awk '
  /=>/ {
    line = $0
    sub(/\/\/.*$/, "", line); sub(/^[ \t]*replace[ \t]+/, "", line); sub(/^[ \t]+/, "", line)
    n = split(line, f, /[ \t]+/)
    if (f[n] == "") n--
    if (f[n] ~ /^[.\/]/ || f[n - 1] == "=>") next
    old = (f[2] == "=>") ? f[1] : f[1] "@" f[2]
    print "-replace=" old "=" f[n - 1] "@" f[n]
  }' "$src/go.mod")
go mod edit -require="$module@$version" "${replaces[@]}"
CGO_ENABLED=0 go build -trimpath -ldflags="$ldflags" -o "$output" "$package"
