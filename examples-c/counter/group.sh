# Sourced by run_server.sh and stop.sh: the flags they share and the
# group's layout (servers on consecutive ports of 127.0.0.1, each in
# RUNTIME/<port>/ with its data, stdout.log and pid).

server_num=3
port=8100
runtime=runtime

# Parses "--name value" for the variables named in $1 (space-separated)
# and the bare "--clean" (sets clean=1); every other argument goes to the
# array `extra`, in order.
parse_flags() {
    local names=" $1 "
    shift
    extra=()
    while [ $# -gt 0 ]; do
        if [ "$1" = --clean ]; then
            clean=1
        elif [[ "$1" == --* && "$names" == *" ${1#--} "* && $# -ge 2 ]]; then
            printf -v "${1#--}" '%s' "$2"
            shift
        else
            extra+=("$1")
        fi
        shift
    done
}

# The group's initial configuration: server_num peers from port on.
group_conf() {
    local conf="" i
    for ((i = 0; i < server_num; i++)); do
        conf+="127.0.0.1:$((port + i)):0,"
    done
    echo "$conf"
}

# Whether the server whose directory is $1 runs (its pid file names a live process).
server_runs() {
    [ -f "$1/pid" ] && kill -0 "$(cat "$1/pid")" 2>/dev/null
}
