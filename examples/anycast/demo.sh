#!/usr/bin/env bash
# The anycast demo: seven `ants` nodes on loopback (examples/anycast/n1.toml … n7.toml).
#
#   n1 — n2 — n3 — n4 — n5 — n6
#                         |
#                         n7
#
# Members of group 161 run on n1 (2 hops from the sender's node, n3) and n7 (3 hops). They
# advertise every 300 ms; nodes hold an advertisement for 400 ms. The sender's capsules all
# go to n1. Then n1's node is killed (SIGKILL): its entries expire and, within one refresh
# period, the capsules go to n7 instead. No root needed. Logs and code caches go to
# /tmp/ants-anycast.
set -euo pipefail
cd "$(dirname "$0")/../.."
run=/tmp/ants-anycast

bold() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
# The sequence numbers a member received, as ranges: "0-19 23 25-30".
received() {
    grep -ho 'received seq [0-9]*' "$1" | awk '{print $3}' | sort -n |
        awk 'NR==1{s=p=$1;next} $1==p+1{p=$1;next} {printf "%s ", (s==p?s:s"-"p); s=p=$1}
             END{if(NR) print (s==p?s:s"-"p); else print "(none)"}'
}

bold "building the ants CLI, the anycast app and the anycast capsule"
cargo build --release --quiet -p ants-node --bin ants --example anycast-app
ants=target/release/ants
app=target/release/examples/anycast-app
rm -rf "$run" && mkdir -p "$run"
code=$run/anycast.wasm
echo "anycast.wasm: $($ants capsule build capsules/anycast --quiet -o "$code" 2>/dev/null | awk '{print $1}')"

declare -A node_pid
# The overlay needs no privilege and `ants run` refuses root unless told; a demo started
# from a root shell says so.
[ "$(id -u)" -ne 0 ] || export ANTS_ALLOW_ROOT=1
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; }
trap cleanup EXIT

bold "starting n1..n7 (logs in $run/nX.log)"
for i in $(seq 7); do
    RUST_LOG=info $ants run --config "examples/anycast/n$i.toml" > "$run/n$i.log" 2>&1 &
    node_pid[$i]=$!
    pids+=($!)
done
for i in $(seq 7); do
    for _ in $(seq 100); do [ -S "$run/n$i.sock" ] && break; sleep 0.05; done
done

bold "members join group 161 on n1 and n7; their advertisements flood (and load the code)"
for i in 1 7; do
    $app -s "$run/n$i.sock" --code "$code" member > "$run/member-n$i.log" 2>&1 &
    pids+=($!)
done
sleep 1.5
cat "$run/member-n1.log" "$run/member-n7.log"

bold "n3 sends seq 0..20 to the group, one every 20 ms"
$app -s "$run/n3.sock" --code "$code" send --count 20 --interval-ms 20
sleep 0.3
grep -m1 'received seq' "$run/member-n1.log"
echo "n1 (2 hops) received: $(received "$run/member-n1.log")"
echo "n7 (3 hops) received: $(received "$run/member-n7.log")"

bold "killing n1's node (SIGKILL); n3 sends seq 20..60, one every 20 ms"
{ kill -KILL "${node_pid[1]}"; wait "${node_pid[1]}"; } 2>/dev/null || true
killed_ms=$(date +%s%3N)
$app -s "$run/n3.sock" --code "$code" send --first 20 --count 40 --interval-ms 20
sleep 0.5

bold "who received what"
echo "n1 (2 hops) received: $(received "$run/member-n1.log")"
echo "n7 (3 hops) received: $(received "$run/member-n7.log")"
first=$(grep -h 'received seq' "$run/member-n7.log" | head -n 1)
echo "n7's first capsule: $first"
echo "failover: $(( $(awk '{print $(NF-1)}' <<< "$first") - killed_ms )) ms after n1 was killed"
tail -n 1 "$run/member-n1.log"
all=$(cat "$run"/member-n*.log | grep -ho 'received seq [0-9]*' | awk '{print $3}')
dups=$(sort -n <<< "$all" | uniq -d | wc -l)
echo "delivered $(wc -l <<< "$all") of 60 exactly once each ($dups duplicates); the rest were sent toward n1 before its entries expired"
[ "$dups" -eq 0 ]
