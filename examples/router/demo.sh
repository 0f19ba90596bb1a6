#!/usr/bin/env bash
# Router mode (needs root): h1 — r1 — r2 — h2 in network namespaces (198.18.0.0/15 only).
# r1 and r2 run `ants run` in router mode: they own their veths through AF_PACKET, with no
# kernel addresses and kernel forwarding off, and forward plain IPv4 themselves. h1 and h2
# are ordinary hosts that also run an overlay node. Shows ping, TTL expiry, an unreachable
# destination, then capsules from h1's app demand-loading through r1 and r2 to h2's app.
# Everything is removed on exit. Logs in /tmp/ants-router-demo.
set -euo pipefail
cd "$(dirname "$0")/../.."
[ "$(id -u)" = 0 ] || { echo "router mode needs root (network namespaces, AF_PACKET)" >&2; exit 1; }
command -v ping >/dev/null || { apt-get update -qq && apt-get install -y -qq iputils-ping >/dev/null 2>&1; }
run=/tmp/ants-router-demo
p=antsdemo-
bold() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
pids=()
cleanup() {
    kill "${pids[@]}" 2>/dev/null || true
    wait 2>/dev/null || true
    for n in h1 r1 r2 h2; do ip netns del "$p$n" 2>/dev/null || true; done
}
trap cleanup EXIT
nsx() { local ns=$1; shift; ip netns exec "$p$ns" "$@"; }

bold "building the ants CLI and the forward capsule"
cargo build --release --quiet -p ants-node
ants=target/release/ants
fwd=$($ants capsule build capsules/forward --quiet | awk '{print $2}')

bold "namespaces h1 — r1 — r2 — h2"
cleanup
rm -rf "$run" && mkdir -p "$run"
for n in h1 r1 r2 h2; do ip netns add "$p$n"; nsx "$n" ip link set lo up; done
veth() { ip -n "$p$1" link add "$2" type veth peer name "$4" netns "$p$3"
         ip -n "$p$1" link set "$2" up; ip -n "$p$3" link set "$4" up; }
veth h1 h1-r1 r1 r1-h1
veth r1 r1-r2 r2 r2-r1
veth r2 r2-h2 h2 h2-r2
nsx h1 ip addr add 198.18.1.10/24 dev h1-r1; nsx h1 ip route add default via 198.18.1.1
nsx h2 ip addr add 198.18.3.10/24 dev h2-r2; nsx h2 ip route add default via 198.18.3.1
for r in r1 r2; do nsx "$r" sysctl -qw net.ipv4.ip_forward=0; done
echo "r1, r2: no IPv4 addresses in the kernel, net.ipv4.ip_forward=0"

bold "starting r1, r2 (router mode) and h1, h2 (overlay nodes)"
# This demo runs as root (namespaces); the hosts' overlay nodes are told that is meant.
export ANTS_ALLOW_ROOT=1
for n in r1 r2 h1 h2; do
    RUST_LOG=info ip netns exec "$p$n" "$ants" run --config "examples/router/$n.toml" > "$run/$n.log" 2>&1 &
    pids+=($!)
done
for n in h1 h2; do
    for _ in $(seq 100); do [ -S "$run/$n.sock" ] && break; sleep 0.05; done
done
sleep 0.3

bold "h1: ping h2 through the userspace routers"
nsx h1 ping -c 3 -i 0.2 198.18.3.10 | sed -n '1,4p'
bold "h1: TTL 1 and 2 expire at r1 and r2"
nsx h1 ping -c 1 -t 1 198.18.3.10 | sed -n 2p || true
nsx h1 ping -c 1 -t 2 198.18.3.10 | sed -n 2p || true
bold "h1: no route to 198.18.99.1 at r1"
nsx h1 ping -c 1 -W 1 198.18.99.1 | sed -n 2p || true

bold "capsules: h1's app sends 100 forward capsules to h2's app"
$ants listen -s "$run/h2.sock" --app 0 --count 100 --idle-timeout 10 > "$run/delivered.jsonl" &
listener=$!
sleep 0.2
$ants send -s "$run/h1.sock" --code "$fwd" --dst 198.18.3.10 --payload "hello through r1 and r2"
# The routers hold at most 64 capsules of a type while they fetch its code: wait for the
# first one to arrive before sending the rest.
for _ in $(seq 200); do [ -s "$run/delivered.jsonl" ] && break; sleep 0.05; done
echo "first capsule delivered at h2 after demand loading at r1, r2 and h2"
$ants send -s "$run/h1.sock" --code "$fwd" --dst 198.18.3.10 --payload "more" --count 99 >/dev/null
wait "$listener" || true
echo "delivered at h2: $(wc -l < "$run/delivered.jsonl") of 100"
head -c 200 "$run/delivered.jsonl"; echo
bold "demand loading, hop by hop (from the node logs)"
for n in r1 r2 h2; do grep -m1 "code verified" "$run/$n.log" | sed "s/^/$n: /" || true; done
