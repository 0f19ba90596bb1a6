#!/usr/bin/env bash
# The operator's tour (README, "Run a node"): build the Debian package, install it into a
# scratch root, start four nodes from the packaged unit's command lines as an unprivileged
# user, move a route with SIGHUP (the unit's ExecReload) while capsules flow — none lost —
# and stop the nodes with SIGTERM (its KillSignal): drained.
#
#   bash examples/edge.sh            # COUNT=3000 capsules at RATE=2000/s
#
# As root the nodes run as `nobody` (standing in for the package's `ants` user, with state
# and runtime directories owned by it, as systemd's StateDirectory/RuntimeDirectory make
# them); as any other user they run as that user. Everything lives under /tmp/ants-edge.
set -euo pipefail
cd "$(dirname "$0")/.."
top=/tmp/ants-edge
count=${COUNT:-3000}
rate=${RATE:-2000}

bold() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
show() { printf '$ %s\n' "$*"; "$@"; }

for tool in dpkg-deb setpriv; do
    command -v "$tool" >/dev/null || { echo "edge.sh needs $tool (Debian: dpkg, util-linux)" >&2; exit 1; }
done
rm -rf "$top" && mkdir -p "$top" && chmod 0755 "$top"

bold "building the package (dist/build-deb.sh: a release build, then cargo-deb)"
bash dist/build-deb.sh -o "$top/out" >"$top/build.log" 2>&1 || { tail -20 "$top/build.log"; exit 1; }
deb=$(ls "$top"/out/*.deb)
echo "$(basename "$deb")"

bold "installing it into a scratch root"
show dpkg-deb -x "$deb" "$top/root"
ants=$top/root/usr/bin/ants
unit=$top/root/usr/lib/systemd/system/ants@.service
show "$ants" --version

# The unit's command lines, with the scratch root's paths.
exec_line() {
    sed -n "s|^$1=||p" "$unit" | sed -e "s|/usr/bin/ants|$ants|" -e "s|/etc/ants/%i.toml|$2|"
}
if [ "$(id -u)" -eq 0 ]; then
    user=nobody
    as=(setpriv --reuid=nobody --regid=nogroup --init-groups --)
else
    user=$(id -un)
    as=()
fi
unset ANTS_ALLOW_ROOT

# A diamond: edge1 reaches edge4 through edge2 at first; the reload moves that route to edge3.
config() { # n, neighbours..., then a route line
    local n=$1 route=$2
    shift 2
    printf '[node]\naddress = "198.18.0.%s"\nlisten = "127.0.0.1:730%s"\n' "$n" "$n"
    printf 'app_socket = "%s/run/edge%s/app.sock"\ncode_cache_dir = "%s/state/edge%s/code"\n' \
        "$top" "$n" "$top" "$n"
    for m in "$@"; do
        printf '\n[[neighbour]]\naddress = "198.18.0.%s"\nendpoint = "127.0.0.1:730%s"\n' "$m" "$m"
    done
    [ -z "$route" ] || printf '\n[[route]]\ndst = "198.18.0.4"\nvia = "%s"\n' "$route"
}
mkdir -p "$top/etc"
config 1 198.18.0.2 2 3 >"$top/etc/edge1.toml"
config 2 "" 1 4 >"$top/etc/edge2.toml"
config 3 "" 1 4 >"$top/etc/edge3.toml"
config 4 "" 2 3 >"$top/etc/edge4.toml"

bold "starting edge1..edge4 from the unit's ExecStartPre and ExecStart, as $user"
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; }
trap cleanup EXIT
for n in 1 2 3 4; do
    for d in state run; do
        install -d -m 0700 -o "$user" "$top/$d/edge$n"
    done
    cfg=$top/etc/edge$n.toml
    read -ra pre <<<"$(exec_line ExecStartPre "$cfg")"
    read -ra start <<<"$(exec_line ExecStart "$cfg")"
    "${as[@]}" "${pre[@]}"
    RUST_LOG=info "${as[@]}" "${start[@]}" >"$top/edge$n.log" 2>&1 &
    pids+=($!)
done
for n in 1 2 3 4; do
    for _ in $(seq 200); do [ -S "$top/run/edge$n/app.sock" ] && break; sleep 0.05; done
    [ -S "$top/run/edge$n/app.sock" ] || { cat "$top/edge$n.log"; exit 1; }
done
show ps -o user=,pid=,args= -p "$(IFS=,; echo "${pids[*]}")"
show "$ants" status -s "$top/run/edge1/app.sock"

bold "capsules flow edge1 -> edge4; SIGHUP moves the route from via edge2 to via edge3"
fwd=$("$ants" capsule build capsules/forward --quiet | awk '{print $2}')
"$ants" listen -s "$top/run/edge4/app.sock" --app 0 --count "$count" --idle-timeout 5 \
    >"$top/delivered.jsonl" &
listener=$!
sleep 0.2
line=$("$ants" send -s "$top/run/edge1/app.sock" --code "$fwd" --dst 198.18.0.4 --payload edge)
type=$(echo "$line" | awk '{print $2}')
"$ants" send -s "$top/run/edge1/app.sock" --type "$type" --dst 198.18.0.4 --payload edge \
    --count $((count - 1)) --rate "$rate" &
sender=$!
sleep 0.7
echo "\$ sed -i 's/via = \"198.18.0.2\"/via = \"198.18.0.3\"/' $top/etc/edge1.toml"
sed -i 's/via = "198.18.0.2"/via = "198.18.0.3"/' "$top/etc/edge1.toml"
read -ra reload <<<"$(sed -n 's|^ExecReload=||p' "$unit" | sed "s|\$MAINPID|${pids[0]}|")"
show "${reload[@]}"
wait "$sender"
wait "$listener" || true
got=$(wc -l <"$top/delivered.jsonl")
grep -h "SIGHUP\|reloaded" "$top/edge1.log" | sed 's/^/edge1: /'
echo "delivered at edge4: $got of $count"
for n in 1 2 3 4; do
    runs=$("$ants" status -s "$top/run/edge$n/app.sock" --json |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["node"]["runs"])')
    echo "edge$n ran $runs capsules"
done
show "$ants" status -s "$top/run/edge1/app.sock"

bold "stopping with the unit's KillSignal (SIGTERM): drain, then exit"
kill -TERM "${pids[@]}"
for n in 0 1 2 3; do
    status=0
    wait "${pids[n]}" || status=$?
    echo "edge$((n + 1)) exited with status $status"
done
pids=()
for n in 1 2 3 4; do
    grep -h "draining\|drained\|stopped" "$top/edge$n.log" | sed "s/^/edge$n: /"
done
[ "$got" -eq "$count" ]
