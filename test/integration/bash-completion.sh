#!/usr/bin/env bash
# data/completion/suture completes every subcommand and every option that
# the built suture's --help lists, at every level (suture, suture feed,
# suture feed refresh, ...), and nothing --help does not list; completing
# a real command line gives the expected words.
source "$(dirname "$0")/lib.sh"
completion=$SOURCE_ROOT/data/completion/suture
# shellcheck source=../../data/completion/suture
source "$completion"

# Options and subcommands of `suture WORDS... --help`, one per line.
# (A command without subcommands gives no lines: grep's status 1 is no error.)
help_options() { "$SUTURE" "$@" --help | sed -n '/^Options:/,/^[A-Z]/p' | { grep -oE '^ +-[^ ]+' || true; } |
    tr ',' '\n' | sed 's/^ *//;s/:.*//' | { grep -E '^-' || true; } | sort -u; }
help_subcommands() { "$SUTURE" "$@" --help | sed -n '/^Subcommands:/,/^$/p' | { grep -oE '^  [a-z-]+' || true; } |
    sed 's/^ *//' | sort -u; }
words() { tr ' ' '\n' <<<"$1" | sed '/^$/d' | sort -u; }

# Every command path, from the help itself.
paths=("")
for ((i = 0; i < ${#paths[@]}; i++)); do
    # shellcheck disable=SC2086
    for sub in $(help_subcommands ${paths[i]}); do
        paths+=("${paths[i]:+${paths[i]} }$sub")
    done
done
[ ${#paths[@]} -gt 10 ] && pass "${#paths[@]} command paths in --help" || fail_check "only ${#paths[@]} command paths"
for path in "${paths[@]}"; do
    # shellcheck disable=SC2086
    expected=$(help_options $path)
    actual=$(words "$(_suture_options_for "$path")")
    check_eq "options of 'suture${path:+ $path}'" "$expected" "$actual"
    # shellcheck disable=SC2086
    expected=$(help_subcommands $path)
    actual=$(words "$(_suture_subcommands_of "$path")")
    check_eq "subcommands of 'suture${path:+ $path}'" "$expected" "$actual"
done

# Completing command lines.
complete_line() { COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); COMPREPLY=(); _suture; echo "${COMPREPLY[*]}"; }
check_eq "suture fe<TAB>" "feed" "$(complete_line suture fe)"
check_eq "suture feed <TAB>" "refresh list" "$(complete_line suture feed '')"
check_eq "suture feed refresh --c<TAB>" "--config-dir --cache-dir" "$(complete_line suture feed refresh --c)"
check_eq "suture -v update --of<TAB>" "--offline" "$(complete_line suture -v update --of)"
check_eq "suture status --format o<TAB>" "openmetrics openvex" "$(complete_line suture status --format o)"
check_eq "suture state <TAB>" "rebuild" "$(complete_line suture state '')"
pids=$(complete_line suture apply --pid "$$")
[[ " $pids " == *" $$ "* ]] && pass "--pid completes running pids" || fail_check "--pid: $pids"
finish
