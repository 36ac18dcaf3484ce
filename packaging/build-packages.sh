#!/usr/bin/env bash
# Builds the cavra-runtime packages: the .deb with cargo-deb, the .rpm with rpmbuild from a source tarball.
#
# usage: packaging/build-packages.sh [--out DIR] [--revision N] [deb] [rpm]
#   --out DIR       where the packages go (default: target/packaging)
#   --revision N    the package revision: 0.1.0-N (default 1)
#   deb, rpm        which packages to build (default: both)
#
# Prints the path of each package it built, one per line, on standard output; progress goes to standard error.
# Needs: cargo-deb (`cargo install --locked cargo-deb`) for the deb; rpmbuild (Debian: `apt-get install rpm`) for the
# rpm. Both builds use the optimised (release) profile and share the target directory, so the second compiles
# little.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
out=$repo/target/packaging
revision=1
kinds=()
while [ $# -gt 0 ]; do
    case "$1" in
    --out) out=$2 && shift 2 ;;
    --revision) revision=$2 && shift 2 ;;
    deb | rpm) kinds+=("$1") && shift ;;
    *)
        sed -n '2,10s/^# \{0,1\}//p' "$0" >&2
        exit 2
        ;;
    esac
done
[ ${#kinds[@]} -gt 0 ] || kinds=(deb rpm)
case "$revision" in *[!0-9]* | '') echo "build-packages.sh: --revision takes a number" >&2 && exit 2 ;; esac
mkdir -p "$out"
out=$(cd "$out" && pwd)
cd "$repo"

target_dir=${CARGO_TARGET_DIR:-$repo/target}
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)
[ -n "$version" ] || { echo "build-packages.sh: no version in Cargo.toml" >&2 && exit 1; }

build_deb() {
    cargo deb --locked --deb-revision "$revision" --output "$out/" >&2
    echo "$out/cavra-runtime_${version}-${revision}_$(dpkg --print-architecture).deb"
}

build_rpm() {
    # The spec's %build compiles the unpacked sources with CARGO_TARGET_DIR pointing at this checkout's target
    # directory, so that it reuses the compiled dependencies: build these very sources here first. (A source file
    # missing from the tarball still makes the build in rpmbuild fail.)
    cargo build --release --locked >&2
    # Source0 is the workspace as `cargo package` would publish its two crates: the daemon's files (Cargo.lock
    # included) and, under client/, the client crate's. A .crate of the daemon alone cannot be built: it depends on
    # the client crate by path, and that crate is not published.
    local top=$out/rpmbuild
    local name=cavra-runtime-$version
    rm -rf "$top/BUILD" "$top/BUILDROOT"
    mkdir -p "$top/SOURCES"
    local files
    files=$(
        cargo package --list --allow-dirty --locked -p cavra-runtime
        cargo package --list --allow-dirty --locked -p cavra-runtime-client | sed 's|^|client/|'
    )
    # What cargo writes into a .crate (the normalised manifest's original, VCS info) is not in the checkout.
    grep -v -e '\.orig$' -e '\.cargo_vcs_info\.json$' -e '^client/Cargo\.lock$' <<<"$files" |
        tar -czf "$top/SOURCES/$name.tar.gz" --owner=0 --group=0 --transform "s|^|$name/|" -T -
    cp packaging/systemd/cavra-runtime.sysusers "$top/SOURCES/"
    local host_args=()
    if [ -z "$(rpm --eval '%{?systemd_post:yes}')" ]; then
        # Not an rpm-based host: no systemd-rpm-macros, and no rpm database that knows cargo or rust.
        host_args=(--load "$repo/packaging/rpm/macros.systemd-fallback" --nodeps)
    fi
    # _dbpath: Debian's rpm keeps its database under ~/.rpmdb; keep any it opens here instead.
    CARGO_TARGET_DIR=$target_dir rpmbuild -bb "${host_args[@]}" \
        --define "_topdir $top" --define "_dbpath $top/rpmdb" \
        --define "cavra_version $version" --define "cavra_release $revision" \
        packaging/rpm/cavra-runtime.spec >&2
    echo "$top/RPMS/$(uname -m)/cavra-runtime-${version}-${revision}.$(uname -m).rpm"
}

for kind in "${kinds[@]}"; do
    "build_$kind"
done
