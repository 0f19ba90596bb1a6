#!/usr/bin/env bash
# The main job, for now: build the `ants` CLI and the shipped capsules to real wasm, validate
# them, and run each on an in-memory node — plus one hostile module, to show containment.
# Needs no root if the wasm32 target is installed or downloadable; otherwise, as root, it
# installs Debian's rustc-web + rust-web-src (see docs/toolchain.md).
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "building the ants CLI (release)"
cargo build --release --quiet -p ants-node
ants=target/release/ants

step "building capsules to wasm: ants capsule build capsules/<name>"
# Each build prints `<type>  <path>`, exactly what sha256sum prints for the module.
fwd_line=$($ants capsule build capsules/forward --quiet)
ping_line=$($ants capsule build capsules/ping --quiet)
printf '%s\n%s\n' "$fwd_line" "$ping_line"
fwd=${fwd_line#*  }
ping=${ping_line#*  }
echo "sha256sum says:"
sha256sum "$fwd" "$ping"

step "validating against the host ABI: ants capsule check"
$ants capsule check "$fwd" "$ping"

step "forward at an intermediate node (198.18.0.2): routed on toward dst"
$ants capsule test "$fwd" --node 198.18.0.2 --dst 198.18.0.9 --route 198.18.0.9=198.18.0.3 --payload "hello, active network"

step "forward at its destination (198.18.0.9): delivered to app 0"
$ants capsule test "$fwd" --node 198.18.0.9 --dst 198.18.0.9 --payload "hello, active network"

step "ping at its destination: turns around toward the source, hop count in the header"
$ants capsule test "$ping" --node 198.18.0.9 --dst 198.18.0.9 --header-hex 000100000000000000000000

step "a hostile capsule (infinite loop) is stopped by fuel; the exit status says it failed"
$ants capsule test tests/fixtures/hostile/infinite_loop.wat || echo "(ants exited with status $?, as expected)"
