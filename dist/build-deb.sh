#!/usr/bin/env bash
# Build the Debian package `ants` into target/debian/ (or -o DIR):
#
#   bash dist/build-deb.sh                            # release build, then package
#   bash dist/build-deb.sh --no-build --profile dev   # package the debug binary (tests)
#
# Installs cargo-deb when missing, and makes the man pages and shell completions from the
# binary being packaged (`ants manual`, `ants completions`) into dist/generated/ first.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cargo-deb >/dev/null || cargo install --locked cargo-deb --version 3.8.0
profile=release build=1
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
    case "${args[i]}" in
        --no-build) build=0 ;;
        --profile) profile=${args[i + 1]} ;;
    esac
done
[ "$profile" = dev ] && dir=debug || dir=$profile
if [ "$build" = 1 ]; then
    cargo build --profile "$profile" -p ants-node
    args+=(--no-build)
fi
ants="${CARGO_TARGET_DIR:-target}/$dir/ants"
gen=dist/generated
rm -rf "$gen" && mkdir -p "$gen/completions"
"$ants" manual "$gen/man/man1" >/dev/null
gzip -9n "$gen"/man/man1/*.1
"$ants" completions bash > "$gen/completions/ants"
"$ants" completions zsh > "$gen/completions/_ants"
"$ants" completions fish > "$gen/completions/ants.fish"
cargo deb -p ants-node "${args[@]}"
