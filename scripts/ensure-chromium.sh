#!/usr/bin/env bash
# Make sure Debian's Chromium is at /usr/bin/chromium for the browser tests.
#
# Playwright's own browser download cannot reach its CDN from here, so the
# browser tests drive the distribution's build instead. Installs nothing when
# /usr/bin/chromium is already there; otherwise installs the `chromium`
# package with apt-get (as root, or through sudo when that is available).
# Fonts come with it (fonts-liberation is a dependency), so screenshots have
# readable text.
set -euo pipefail

readonly CHROMIUM=/usr/bin/chromium

if [[ -x "${CHROMIUM}" ]]; then
    exit 0
fi

if [[ "$(id -u)" -eq 0 ]]; then
    as_root=()
elif command -v sudo >/dev/null 2>&1; then
    as_root=(sudo --non-interactive)
else
    printf 'ensure-chromium: %s is missing and we are not root; install Debian'"'"'s chromium package\n' \
        "${CHROMIUM}" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
"${as_root[@]}" apt-get update -qq >&2
"${as_root[@]}" apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >&2

if [[ ! -x "${CHROMIUM}" ]]; then
    printf 'ensure-chromium: apt-get finished but %s is still missing\n' "${CHROMIUM}" >&2
    exit 1
fi
"${CHROMIUM}" --version >&2
