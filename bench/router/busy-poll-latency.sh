#!/usr/bin/env bash
# Ping latency through one `ants` router on AF_XDP, busy polling on and off (root):
#   h1 (198.18.61.10) — r (ants, datapath = "afxdp") — h2 (198.18.62.10)
#   bash bench/router/busy-poll-latency.sh [BUSY_POLL_US[/WHEN]...]   # default: 0 1000
# WHEN is `[router] busy_poll`: "always" (this script's default for N > 0) or "overload"
# (the node's default), e.g. 1000/overload.
# Prints ping's summary for 500 pings at 1.5 ms and 300 at 10 ms intervals per setting.
set -euo pipefail
cd "$(dirname "$0")/../.."
settings=("${@:-0}")
[ $# -gt 0 ] || settings=(0 1000)
ants=${ANTS:-target/release/ants}
[ -x "$ants" ] || cargo build --release -p ants-node --bin ants
dir=$(mktemp -d)
netns_del() { for n in h1 r h2; do ip netns del "lat-$n" 2>/dev/null || true; done; }
trap 'netns_del; rm -rf "$dir"' EXIT
netns_del
for n in h1 r h2; do ip netns add "lat-$n"; ip -n "lat-$n" link set lo up; done
ip link add h1-r netns lat-h1 type veth peer name r-h1 netns lat-r
ip link add h2-r netns lat-h2 type veth peer name r-h2 netns lat-r
for x in "h1 h1-r" "r r-h1" "r r-h2" "h2 h2-r"; do ip -n "lat-${x% *}" link set "${x#* }" up; done
ip -n lat-h1 addr add 198.18.61.10/24 dev h1-r && ip -n lat-h1 route add default via 198.18.61.1
ip -n lat-h2 addr add 198.18.62.10/24 dev h2-r && ip -n lat-h2 route add default via 198.18.62.1
for us in "${settings[@]}"; do
    for setting in $us; do
        us1=${setting%/*}
        when=""
        [ "$us1" = 0 ] || when='busy_poll = "always"'
        [ "$setting" = "$us1" ] || when="busy_poll = \"${setting#*/}\""
        cat >"$dir/r.toml" <<CFG
[node]
address = "198.18.61.1"
code_cache_dir = "$dir/code"
[router]
datapath = "afxdp"
busy_poll_us = $us1
$when
[[router.interface]]
name = "r-h1"
address = "198.18.61.1/24"
[[router.interface]]
name = "r-h2"
address = "198.18.62.1/24"
CFG
        ip netns exec lat-r "$ants" run --config "$dir/r.toml" 2>"$dir/r.log" &
        pid=$!
        sleep 1
        ip netns exec lat-h1 ping -q -c 20 -i 0.05 198.18.62.10 >/dev/null || { cat "$dir/r.log"; exit 1; }
        for iv in 0.0015 0.01; do
            n=500; [ "$iv" = 0.01 ] && n=300
            echo "busy_poll_us=$setting interval=${iv}s: $(ip netns exec lat-h1 ping -q -c $n -i $iv 198.18.62.10 | tail -1)"
        done
        kill -TERM "$pid"; wait "$pid" || true
        ! grep -q "busy polling unavailable" "$dir/r.log" || grep "busy polling" "$dir/r.log"
    done
done
