#!/usr/bin/env bash
# Rejoins a member of the running `make lab` from any terminal, recorded so that `make stop` ends it:
#   bash tests/lab/rejoin.sh RANK [more tom-member flags]
# It runs the lab's member command (same helper, host, secret and log level) with --rejoin RANK, and
# with --peer for every member the lab knows of, so that it still finds the group if the helper is gone.
set -euo pipefail
# shellcheck source=tests/lab/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

rank=${1:-}
case $rank in
"" | *[!0-9]*)
    echo "usage: bash tests/lab/rejoin.sh RANK [tom-member flags]   (RANK: the rank its JOINED line showed)" >&2
    exit 2
    ;;
esac
shift
load_lab
known_peers
member_command --rejoin "$rank" "${peers[@]}" "$@"
# Recorded before the exec: this PID becomes the member's.
record $$ "$dir/pids"
exec "${cmd[@]}"
