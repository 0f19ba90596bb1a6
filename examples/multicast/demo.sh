#!/usr/bin/env bash
# Multicast over a 7-node tree on loopback (examples/multicast/n1..n7.toml):
#
#         n1            an app on n1 sends; apps on n5, n6 and n7 receive
#         |
#         n2
#        /  \
#      n3    n4
#     /  \     \
#   n5    n6    n7
#
# The receivers subscribe toward n1 and refresh every third of their 2 s lifetime; the
# subscribes lay the tree down in the nodes' soft-stores (and make n3, n4, n2 and n1 fetch the
# code hop by hop). n1's app sends 1000 data capsules: one copy per branch, each receiver gets
# each capsule once. Then n5's and n6's apps exit — they stop refreshing, nobody tells the
# network — and two lifetimes later 100 more capsules reach n7 only.
# No root needed. Logs and code caches go to /tmp/ants-multicast.
set -euo pipefail
cd "$(dirname "$0")/../.."
run=/tmp/ants-multicast
count=${COUNT:-1000}
lifetime_ms=2000

bold() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

bold "building the ants CLI, the multicast app and the multicast capsule"
cargo build --release --quiet -p ants-node --bin ants --example multicast-app
ants=target/release/ants
app=target/release/examples/multicast-app
rm -rf "$run" && mkdir -p "$run"
$ants capsule build capsules/multicast --quiet -o "$run/multicast.wasm" 2>/dev/null
$ants capsule check "$run/multicast.wasm"

# The overlay needs no privilege and `ants run` refuses root unless told; a demo started
# from a root shell says so.
[ "$(id -u)" -ne 0 ] || export ANTS_ALLOW_ROOT=1
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; }
trap cleanup EXIT

bold "starting n1..n7 (RUST_LOG=info, logs in $run/nX.log)"
for i in 1 2 3 4 5 6 7; do
    RUST_LOG=info $ants run --config examples/multicast/n$i.toml > "$run/n$i.log" 2>&1 &
    pids+=($!)
done
for i in 1 2 3 4 5 6 7; do
    for _ in $(seq 100); do [ -S "$run/n$i.sock" ] && break; sleep 0.05; done
done

receive() { # node app count
    $app receive -s "$run/n$1.sock" --app "$2" --sender 198.18.0.1 --code "$run/multicast.wasm" \
        --lifetime-ms $lifetime_ms --count "$3" --idle-timeout 10 > "$run/r$1.out" &
}
bold "n5, n6, n7: receiver apps subscribe to group 7 at 198.18.0.1 (lifetime $lifetime_ms ms)"
receive 5 5 "$count"; r5=$!
receive 6 6 "$count"; r6=$!
receive 7 7 $((count + 100)); r7=$!
sleep 1
echo "the tree, as the nodes logged each new branch:"
for i in 1 2 3 4 5 6 7; do
    grep -h "new branch" "$run/n$i.log" | sed -E "s/.*capsule: /  n$i: /; s/ ty=.*//" || true
done

bold "n1: the sender app sends $count data capsules to group 7"
$app send -s "$run/n1.sock" --code "$run/multicast.wasm" --count "$count" --rate 4000
wait "$r5" "$r6"
cat "$run/r5.out" "$run/r6.out"

bold "n5 and n6 stop refreshing (their apps exited); n7 keeps its subscription"
sleep $((2 * lifetime_ms / 1000))
echo "two lifetimes later, plain listeners on n5 and n6 take the apps' ids"
$ants listen -s "$run/n5.sock" --app 5 --idle-timeout 2 > "$run/l5.jsonl" & l5=$!
$ants listen -s "$run/n6.sock" --app 6 --idle-timeout 2 > "$run/l6.jsonl" & l6=$!
sleep 0.2
$app send -s "$run/n1.sock" --code "$run/multicast.wasm" --first "$count" --count 100 --rate 1000
wait "$r7" "$l5" "$l6" || true
echo "198.18.0.5 app 5: $(wc -l < "$run/l5.jsonl") capsules after the branch expired"
echo "198.18.0.6 app 6: $(wc -l < "$run/l6.jsonl") capsules after the branch expired"
cat "$run/r7.out"

bold "node counters at shutdown: capsules run, copies sent (data + subscribes)"
cleanup
pids=()
for i in 1 2 3 4 5 6 7; do
    echo "n$i: $(grep -o 'runs: [0-9]*, sent: [0-9]*' "$run/n$i.log" || echo '?')"
done
grep -q "$count distinct" "$run/r5.out" && grep -q "$count distinct" "$run/r6.out" \
    && grep -q "$((count + 100)) distinct" "$run/r7.out" \
    && [ ! -s "$run/l5.jsonl" ] && [ ! -s "$run/l6.jsonl" ]
