#!/usr/bin/env bash
# Traceroute over an active network: eight `ants` nodes on loopback, a line of six with a
# side branch at n3 (examples/traceroute/n1.toml … n8.toml):
#
#   n1 — n2 — n3 — n4 — n5 — n6
#              |
#              n7 — n8
#
# `ants traceroute` on n1 injects `traceroute` capsules toward n6; every active hop appends
# its address and clock, n6 turns the capsule around, and n1 hands the path back. The first
# probe also carries the code, which n2…n6 fetch hop by hop. No root needed. Logs and code
# caches go to /tmp/ants-traceroute.
set -euo pipefail
cd "$(dirname "$0")/../.."
run=/tmp/ants-traceroute
nodes=(1 2 3 4 5 6 7 8)

bold() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

bold "building the ants CLI and the traceroute capsule"
cargo build --release --quiet -p ants-node
ants=target/release/ants
rm -rf "$run" && mkdir -p "$run"
$ants capsule build capsules/traceroute --quiet -o "$run/traceroute.wasm"

# The overlay needs no privilege and `ants run` refuses root unless told; a demo started
# from a root shell says so.
[ "$(id -u)" -ne 0 ] || export ANTS_ALLOW_ROOT=1
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; }
trap cleanup EXIT

bold "starting n1..n8 (RUST_LOG=info, logs in $run/nX.log)"
for i in "${nodes[@]}"; do
    RUST_LOG=info $ants run --config "examples/traceroute/n$i.toml" > "$run/n$i.log" 2>&1 &
    pids+=($!)
done
for i in "${nodes[@]}"; do
    for _ in $(seq 100); do [ -S "$run/n$i.sock" ] && break; sleep 0.05; done
done

bold "n1 → n6: five active hops; the first probe demand-loads the code at each of them"
$ants traceroute 198.18.0.6 -s "$run/n1.sock" --code "$run/traceroute.wasm"

bold "n8 → n6: up the side branch, then along the line; only n7 still has to fetch the code"
$ants traceroute 198.18.0.6 -s "$run/n8.sock" --code "$run/traceroute.wasm"

bold "n1 → n8, one probe, as JSON (the source is the first record)"
$ants traceroute 198.18.0.8 -s "$run/n1.sock" --code "$run/traceroute.wasm" -q 1 --json

bold "n1 → 198.18.0.9: no node has it; n1 itself turns the probe around (!N, exit status 1)"
$ants traceroute 198.18.0.9 -s "$run/n1.sock" --code "$run/traceroute.wasm" -q 1 || echo "exit status $?"
