#!/usr/bin/env bash
# Type-check and lint cavra-runtime for macOS on this Debian machine, without Apple's SDK and without rustup targets.
#
# Debian's rustc-web with its standard library's source (rust-web-src) builds std for the Apple targets with
# -Zbuild-std; ring's C parts compile with clang against three stub headers (written here, to a temporary directory).
# Nothing is linked, so this finds compile errors, type errors and lints in the cfg(target_os = "macos") code, not
# what happens at run time: that needs a Mac.
#
# usage: .ci/macos-typecheck.sh check|clippy [TARGET...]
#   check   cargo check of the library, the binary, tests, benches and examples
#   clippy  the same with clippy, warnings as errors (as .ci/run lints the Linux build)
#   TARGET  default: x86_64-apple-darwin and aarch64-apple-darwin
# Exits 1 if any target fails. The build goes to target/macos-check, beside (not over) the normal target/.
# The Debian packages it needs are installed by .ci/run: rustc-web cargo-web rust-web-src clang (and rust-web-clippy).
set -euo pipefail
cd "$(dirname "$0")/.."

verb=${1:-}
case "$verb" in
  check) lint=() ;;
  clippy) lint=(-- -D warnings) ;;
  *) echo "usage: $0 check|clippy [TARGET...]" >&2; exit 2 ;;
esac
shift
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(x86_64-apple-darwin aarch64-apple-darwin)

# Debian's cargo and rustc, not rustup's: their sysroot holds the std source that -Zbuild-std compiles.
missing=()
for program in /usr/bin/cargo /usr/bin/rustc /usr/bin/clang; do
  [ -x "$program" ] || missing+=("$program")
done
[ -d /usr/lib/rustlib/src/rust/library ] || missing+=("/usr/lib/rustlib/src/rust/library (rust-web-src)")
[ "$verb" != clippy ] || [ -x /usr/bin/cargo-clippy ] || missing+=("/usr/bin/cargo-clippy (rust-web-clippy)")
if [ ${#missing[@]} -gt 0 ]; then
  echo "macos-typecheck: missing ${missing[*]}" >&2
  echo "  install: apt-get install --no-install-recommends rustc-web cargo-web rust-web-src clang rust-web-clippy" >&2
  exit 1
fi

stubs=$(mktemp -d)
trap 'rm -rf "$stubs"' EXIT
# ring includes these three; clang has no Apple SDK here. Its other headers come from clang's own (freestanding).
cat >"$stubs/TargetConditionals.h" <<'EOF'
#define TARGET_OS_MAC 1
#define TARGET_OS_OSX 1
#define TARGET_OS_IPHONE 0
#define TARGET_OS_IOS 0
#define TARGET_OS_WATCH 0
#define TARGET_OS_TV 0
#define TARGET_OS_SIMULATOR 0
EOF
echo '#define assert(x) ((void)0)' >"$stubs/assert.h"
cat >"$stubs/string.h" <<'EOF'
#include <stddef.h>
void *memcpy(void *, const void *, size_t);
void *memmove(void *, const void *, size_t);
void *memset(void *, int, size_t);
int memcmp(const void *, const void *, size_t);
size_t strlen(const char *);
EOF

status=0
for target in "${targets[@]}"; do
  variable=${target//-/_}
  echo "== macOS $verb $target"
  env PATH="/usr/bin:$PATH" RUSTC=/usr/bin/rustc RUSTC_BOOTSTRAP=1 CARGO_TARGET_DIR=target/macos-check \
    "CC_$variable=clang" "CFLAGS_$variable=--target=$target -ffreestanding -nostdlibinc -I$stubs" \
    /usr/bin/cargo "$verb" -Zbuild-std=std,panic_abort --target "$target" --all-targets --locked "${lint[@]}" ||
    status=1
done
exit $status
