#!/usr/bin/env bash
# Build a fully static x86_64 Linux netdev-broker (glibc with +crt-static: no musl toolchain is
# needed) with libssh2, OpenSSL and zlib linked in. See docs/install.md.
#
#   scripts/build-static.sh              # -> target/static/x86_64-unknown-linux-gnu/release/netdev-broker
#                                        #    and the jump-host bundle target/static/dist/
#                                        #    netdev-broker-VERSION-x86_64-linux{/,.tar.gz}: the binary,
#                                        #    install.sh, netdev-broker.sh, netdev-broker.service and
#                                        #    config.example.yml
#   scripts/build-static.sh --print-path # where the binary is
#
# Needs (Debian 12): the Rust toolchain, gcc, libc6-dev, libssl-dev (ships libssl.a and
# libcrypto.a), zlib1g-dev (libz.a) and pkg-config. The jump host needs none of them.
#
# * --target is given explicitly so that +crt-static applies to the binary only, not to build
#   scripts and proc macros (maud), which must stay dynamic host programs.
# * Its own target dir (target/static, or $NETDEV_BROKER_STATIC_TARGET_DIR) keeps the normal
#   build cache in target/ untouched.
# * libssh2 is the vendored one of the pinned libssh2-sys; .cargo/config.toml's CFLAGS (the
#   legacy SHA-1/3DES/DSA algorithms) apply as in the normal build.
# * OPENSSL_STATIC=1 links Debian's libssl.a/libcrypto.a; LIBZ_SYS_STATIC=1 builds libz-sys's
#   bundled zlib instead of linking libz.so.
# * The release profile (Cargo.toml) gives LTO, opt-level "s", panic = "unwind" and strip.
# * Static glibc: host lookups through /etc/hosts (files) and DNS (dns) are built into
#   libc.a; other NSS modules of a host's /etc/nsswitch.conf (sss, resolve, myhostname,
#   mdns, ...) cannot be used. See docs/install.md.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TARGET=x86_64-unknown-linux-gnu
TARGET_DIR=${NETDEV_BROKER_STATIC_TARGET_DIR:-$ROOT/target/static}
BIN=$TARGET_DIR/$TARGET/release/netdev-broker

if [[ ${1:-} == --print-path ]]; then
  echo "$BIN"
  exit 0
fi
if [[ $# -gt 0 ]]; then
  echo "usage: $0 [--print-path]" >&2
  exit 2
fi
if [[ $(uname -m) != x86_64 ]]; then
  echo "build-static: this builds for $TARGET on an x86_64 host only" >&2
  exit 2
fi
for f in libssl.a libcrypto.a libc.a; do
  if [[ ! -e /usr/lib/x86_64-linux-gnu/$f ]]; then
    echo "build-static: /usr/lib/x86_64-linux-gnu/$f missing: apt-get install libssl-dev libc6-dev" >&2
    exit 2
  fi
done

cd "$ROOT"
export OPENSSL_STATIC=1
export LIBZ_SYS_STATIC=1
# With --target, RUSTFLAGS reach the target's crates only (not build scripts, not proc macros).
unset CARGO_ENCODED_RUSTFLAGS
export RUSTFLAGS="${RUSTFLAGS:+$RUSTFLAGS }-C target-feature=+crt-static"
t0=$SECONDS
cargo build --release --locked --target "$TARGET" --target-dir "$TARGET_DIR" --bin netdev-broker
echo "build-static: built in $((SECONDS - t0)) s: $BIN ($(stat -c %s "$BIN") bytes)"

# The bundle to copy to the jump host.
version=$("$BIN" --version | head -n1 | cut -d' ' -f2)
name=netdev-broker-$version-x86_64-linux
dist=$TARGET_DIR/dist
rm -rf "${dist:?}/$name" "$dist/$name.tar.gz"
mkdir -p "$dist/$name"
cp "$BIN" "$dist/$name/netdev-broker"
for f in install.sh netdev-broker.sh netdev-broker.service config.example.yml; do
  cp "$ROOT/$f" "$dist/$name/$f"
done
tar -C "$dist" --owner=0 --group=0 -czf "$dist/$name.tar.gz" "$name"
echo "build-static: bundle $dist/$name.tar.gz"
