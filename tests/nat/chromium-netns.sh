#!/bin/sh
# Playwright's executablePath for the NAT tests: Chromium inside network namespace $MX_NETNS.
# Playwright talks to Chromium over a pipe, so node itself stays in the root namespace.
set -eu
[ -n "${MX_NETNS:-}" ] || { echo "chromium-netns.sh: MX_NETNS is not set" >&2; exit 2; }
exec ip netns exec "$MX_NETNS" "${CHROMIUM:-/usr/bin/chromium}" "$@"
