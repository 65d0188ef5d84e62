#!/usr/bin/env bash
# Build FerretDB (MongoDB wire protocol on SQLite) from the Go module proxy,
# pinned by tools/ferretdb/go.mod and go.sum, and print the binary's path.
#
# The binary is cached outside the repository, in
# ${XDG_CACHE_HOME:-$HOME/.cache}/imagecore/bin/ferretdb-<version>; a second
# run only prints the path. stdout carries the path alone, build output goes
# to stderr. Needs only Go (1.24 or newer, for the go.mod `tool` directive).
#
# Why vendor instead of `go build` straight from the module cache:
# FerretDB's build/version package embeds a generated version.txt that is not
# in the published module, and its init() panics without it when the main
# package is FerretDB's own. The module cache is read-only and `-overlay` may
# not replace files under GOMODCACHE, so the pinned module graph is vendored
# into a scratch directory, version.txt is written there, and the build runs
# with -mod=vendor.
set -euo pipefail

readonly FERRETDB_MODULE="github.com/FerretDB/FerretDB"
readonly FERRETDB_VERSION="v1.24.2"

repo_root="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)"
tools_dir="${repo_root}/tools/ferretdb"
cache_dir="${XDG_CACHE_HOME:-${HOME}/.cache}/imagecore"
bin="${cache_dir}/bin/ferretdb-${FERRETDB_VERSION}"

if [[ -x "${bin}" ]]; then
    printf '%s\n' "${bin}"
    exit 0
fi

if ! grep -q "^[[:space:]]*${FERRETDB_MODULE} ${FERRETDB_VERSION}\b" "${tools_dir}/go.mod"; then
    echo "ferretdb.sh: ${tools_dir}/go.mod does not pin ${FERRETDB_MODULE} ${FERRETDB_VERSION}" >&2
    exit 1
fi

go_cmd="$(command -v go || true)"
if [[ -z "${go_cmd}" && -x /usr/local/go/bin/go ]]; then
    go_cmd=/usr/local/go/bin/go
fi
if [[ -z "${go_cmd}" ]]; then
    echo "ferretdb.sh: Go is not installed (need go >= 1.24 on PATH or in /usr/local/go)" >&2
    exit 1
fi

mkdir -p "${cache_dir}/bin"
# The scratch copy holds ~250 MB of vendored sources: keep it on the cache's
# disk rather than a possibly small tmpfs, and always remove it.
scratch="$(mktemp -d "${cache_dir}/ferretdb-build.XXXXXX")"
trap 'chmod -R u+w "${scratch}" 2>/dev/null || true; rm -rf "${scratch}"' EXIT

{
    echo "ferretdb.sh: building ${FERRETDB_MODULE} ${FERRETDB_VERSION} with $("${go_cmd}" version)"
    cp "${tools_dir}/go.mod" "${tools_dir}/go.sum" "${scratch}/"
    cd "${scratch}"
    "${go_cmd}" mod vendor
    version_dir="vendor/${FERRETDB_MODULE}/build/version"
    printf '%s\n' "${FERRETDB_VERSION}" >"${version_dir}/version.txt"
    printf '%s\n' "imagecore" >"${version_dir}/package.txt"
    # Pure Go (modernc.org/sqlite): no C toolchain needed.
    CGO_ENABLED=0 "${go_cmd}" build -mod=vendor -trimpath -buildvcs=false \
        -o "${scratch}/ferretdb" "${FERRETDB_MODULE}/cmd/ferretdb"
    "${scratch}/ferretdb" --version
} >&2

# Rename within one filesystem is atomic: a concurrent run sees either no
# binary or a whole one.
mv -f "${scratch}/ferretdb" "${bin}"
printf '%s\n' "${bin}"
