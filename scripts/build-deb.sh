#!/usr/bin/env bash
# Builds the Debian package: ./scripts/build-deb.sh [OUTPUT_DIR] (default dist/).
#
# The source tree (tracked and new, not ignored files) is copied to a temp dir
# and built there with `dpkg-buildpackage -us -uc -b`, so the checkout gets no
# build leftovers; the .deb (and .buildinfo/.changes) land in OUTPUT_DIR.
# Needs the build dependencies of debian/control (scripts/setup.sh installs
# them as root). pip's downloads for the private virtualenv are cached in
# $WAZOD_DEB_CACHE (default ~/.cache/wazod-deb) so a rebuild works offline.
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(realpath -m "${1:-dist}")
cache=${WAZOD_DEB_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/wazod-deb}
mkdir -p "$out" "$cache/pip"

work=$(mktemp -d "${TMPDIR:-/tmp}/wazod-deb.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir "$work/wazod"
git ls-files -z --cached --others --exclude-standard | tar --null -T - -cf - | tar -xf - -C "$work/wazod"

version=$(dpkg-parsechangelog -l debian/changelog -S Version)
(
  cd "$work/wazod"
  PIP_CACHE_DIR="$cache/pip" dpkg-buildpackage -us -uc -b >"$work/build.log" 2>&1 && cp "$work/build.log" "$out/build.log"
) || { tail -n 60 "$work/build.log" >&2; echo "build-deb: dpkg-buildpackage failed (log above)" >&2; exit 1; }
arch=$(dpkg --print-architecture)
for f in "$work"/wazod_"$version"_"$arch".deb "$work"/wazod_"$version"_"$arch".buildinfo "$work"/wazod_"$version"_"$arch".changes; do
  [ -e "$f" ] && cp "$f" "$out/"
done
echo "$out/wazod_${version}_${arch}.deb"
