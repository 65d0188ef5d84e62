#!/usr/bin/env bash
# Check compose files with compose-go, the loader Docker Compose itself uses
# (tools/compose-check: YAML, the Compose Specification's JSON schema,
# interpolation, consistency), without a Docker engine:
#
#   scripts/compose-check.sh [-env NAME=VALUE]... [-print] docker-compose.yml
#
# The checker is built once from the Go module proxy, pinned by
# tools/compose-check/go.mod and go.sum, and cached outside the repository in
# ${XDG_CACHE_HOME:-$HOME/.cache}/imagecore/bin/compose-check-<hash of its
# sources>; later runs only run it. Build output goes to stderr. Needs only Go
# (1.24 or newer).
set -euo pipefail

repo_root="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)"
tools_dir="${repo_root}/tools/compose-check"
cache_dir="${XDG_CACHE_HOME:-${HOME}/.cache}/imagecore"
sources_hash="$(cat "${tools_dir}/go.mod" "${tools_dir}/go.sum" "${tools_dir}/main.go" \
    | sha256sum | cut -c1-16)"
bin="${cache_dir}/bin/compose-check-${sources_hash}"

if [[ ! -x "${bin}" ]]; then
    go_cmd="$(command -v go || true)"
    if [[ -z "${go_cmd}" && -x /usr/local/go/bin/go ]]; then
        go_cmd=/usr/local/go/bin/go
    fi
    if [[ -z "${go_cmd}" ]]; then
        echo "compose-check.sh: Go is not installed (need go >= 1.24 on PATH or in /usr/local/go)" >&2
        exit 1
    fi
    mkdir -p "${cache_dir}/bin"
    scratch="$(mktemp -d "${cache_dir}/compose-check-build.XXXXXX")"
    trap 'rm -rf "${scratch}"' EXIT
    echo "compose-check.sh: building tools/compose-check with $("${go_cmd}" version)" >&2
    # Pure Go; -mod=readonly: go.sum must already pin every module.
    (cd "${tools_dir}" && CGO_ENABLED=0 "${go_cmd}" build -mod=readonly -trimpath \
        -buildvcs=false -o "${scratch}/compose-check" .) >&2
    # Rename within one filesystem is atomic: a concurrent run sees either no
    # binary or a whole one.
    mv -f "${scratch}/compose-check" "${bin}"
fi

exec "${bin}" "$@"
