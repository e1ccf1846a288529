#!/usr/bin/env bash
# Fetch llhttp 9.3.0's C release (the sdist of the PyPI package llhttp==9.3.0.0), verify its
# sha256 and unpack lib/ into third_party/llhttp-9.3.0 (git-ignored). Idempotent.
set -euo pipefail
VERSION=9.3.0
SDIST=llhttp-9.3.0.0.tar.gz
SHA256=0d989363e7fb6f270b9d49956e7a3945c26778f8c70a166815264309ac6a8295
top=$(cd "$(dirname "$0")/.." && pwd)
dest="$top/third_party/llhttp-$VERSION"
if [ -f "$dest/lib/llhttp.h" ] && [ -f "$dest/lib/llhttp.c" ]; then
  exit 0
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "fetch-llhttp: downloading llhttp==9.3.0.0 source distribution"
python3 -m pip download --quiet --no-binary :all: --no-deps -d "$tmp" \
  llhttp==9.3.0.0 2>"$tmp/pip.log" || {
  # pip may try to build metadata; the sdist itself is all we need.
  [ -f "$tmp/$SDIST" ] || { cat "$tmp/pip.log" >&2; echo "fetch-llhttp: download failed" >&2; exit 1; }
}
echo "$SHA256  $tmp/$SDIST" | sha256sum --check --quiet - || {
  echo "fetch-llhttp: sha256 mismatch for $SDIST" >&2; exit 1; }
mkdir -p "$tmp/x"
tar -xzf "$tmp/$SDIST" -C "$tmp/x"
rm -rf "$dest"
mkdir -p "$dest"
cp -r "$tmp/x/llhttp-9.3.0.0/lib" "$tmp/x/llhttp-9.3.0.0/LICENSE" "$dest/"
echo "fetch-llhttp: llhttp $VERSION sources in $dest"
