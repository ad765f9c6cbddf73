#!/usr/bin/env bash
# One process of `make lab`, in its tmux pane (or in a terminal of its own when tmux is missing):
#   tests/lab/pane.sh helper      the helper
#   tests/lab/pane.sh member I    member I: joins the group; when it ends (killed, excluded, Ctrl-C, ...)
#                                 the pane says why and offers to rejoin it (Enter), as a new life of its
#                                 rank, until you type q
# Every program started here is recorded (common.sh) so that `make stop` ends it. Member I's stdout and
# stderr are also appended to LAB_DIR/memberI.out and memberI.log.
set -uo pipefail
# shellcheck source=tests/lab/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
load_lab || exit 1

role=${1:-}
if [ "$role" = helper ]; then
    helper=("$bin/tom-helper" --size "$members" --port "$port" --bind 127.0.0.1)
    if [ -n "$cookie" ]; then helper+=(--cookie-file "$cookie"); fi
    record $$ "$dir/pids"
    exec env "RUST_LOG=$log" "${helper[@]}"
fi
if [ "$role" != member ] || [ -z "${2:-}" ]; then
    echo "usage: $0 helper | member INDEX" >&2
    exit 2
fi
index=$2
out="$dir/member$index.out"
err="$dir/member$index.log"
record $$ "$dir/panes"
echo "${TMUX_PANE:-}" >"$dir/member$index.pane"

# Ctrl-C ends the member (a handler, unlike an ignored signal, is reset by exec), not this pane.
trap ':' INT

# describe STATUS: why a member ended, from its exit status.
describe() {
    case $1 in
    0) echo "left the group cleanly (exit 0)" ;;
    1) echo "ended with an error (exit 1; its last log line above says which)" ;;
    2) echo "was given bad arguments (exit 2)" ;;
    3) echo "was excluded from the group (exit 3)" ;;
    *)
        if [ "$1" -gt 128 ]; then
            echo "was killed by signal $(($1 - 128)) (SIG$(kill -l $(($1 - 128)) 2>/dev/null || echo '?'))"
        else
            echo "exited with status $1"
        fi
        ;;
    esac
}

rejoin="bash tests/lab/rejoin.sh"
if [ "$dir" != "$lab_root/target/lab" ]; then rejoin="LAB_DIR=$(printf %q "$dir") $rejoin"; fi
extra=() # the first life joins; later ones rejoin
while :; do
    member_command "${extra[@]}"
    echo "member $index: ${cmd[*]}"
    # The subshell records its own PID, then becomes the member: the recorded PID is the member's. The
    # copies to the log files ignore Ctrl-C, so they still see the member's last lines. The pane's
    # stderr is fd 3 inside: bash's own "Killed" notice goes to /dev/null, the member's log does not.
    {
        (
            record "$BASHPID" "$dir/pids"
            echo "$BASHPID" >"$dir/member$index.pid"
            exec "${cmd[@]}" 2> >(trap '' INT; exec tee -a "$err" >&3)
        ) | (trap '' INT; exec tee -a "$out")
        status=${PIPESTATUS[0]}
    } 3>&2 2>/dev/null
    rank=$(awk '/^JOINED/ { rank = $2 } END { print rank }' "$out" 2>/dev/null)
    echo
    echo "member $index$([ -n "$rank" ] && echo " (rank $rank)") $(describe "$status")."
    while :; do
        if [ -n "$rank" ]; then
            prompt="Enter: rejoin as rank $rank; a number: rejoin as that rank; q: close this pane > "
        else
            prompt="it never joined. A number: rejoin as that rank; Enter: join again; q: close this pane > "
        fi
        echo "(from another terminal instead: $rejoin ${rank:-RANK}; make stop ends either)"
        read -r -p "$prompt" answer
        read_status=$?
        if [ $read_status -gt 128 ]; then continue; fi # Ctrl-C at the prompt: ask again
        if [ $read_status -ne 0 ] || [ "$answer" = q ]; then
            echo "pane closed; make stop ends the rest of the lab"
            exit 0
        fi
        case $answer in
        "") [ -n "$rank" ] && extra=(--rejoin "$rank") || extra=() ;;
        *[!0-9]*)
            echo "not a rank: $answer"
            continue
            ;;
        *) extra=(--rejoin "$answer") ;;
        esac
        break
    done
    if [ ${#extra[@]} -gt 0 ]; then
        known_peers "$index"
        extra+=("${peers[@]}")
    fi
done
