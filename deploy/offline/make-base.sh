#!/usr/bin/env bash
# A local base image from Debian packages, for sites where no container registry is reachable:
# debootstrap (minbase) bookworm with Python 3.11, imported as $TAG. The root file system's tarball is
# cached in $CACHE, so later runs import it in seconds instead of bootstrapping again (~2 min).
#   deploy/offline/make-base.sh [TAG]        (root; needs debootstrap and a Debian mirror)
set -euo pipefail
TAG=${1:-lora-scorer-base:bookworm}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
CACHE=${LORA_SCORER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/lora-scorer}
TARBALL=$CACHE/base-bookworm.tar
if docker image inspect "$TAG" >/dev/null 2>&1; then
  echo "base image $TAG is present"; exit 0
fi
mkdir -p "$CACHE"
if [[ ! -s $TARBALL ]]; then
  root=$(mktemp -d)
  trap 'rm -rf "$root"' EXIT
  echo "debootstrap bookworm (minbase + python3) from $MIRROR into $root"
  debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
    bookworm "$root" "$MIRROR" >"$CACHE/debootstrap.log" 2>&1 \
    || { tail -20 "$CACHE/debootstrap.log" >&2; exit 1; }
  # The image's apt reads the same mirror; no cached package lists or .debs in the base.
  echo "deb $MIRROR bookworm main" >"$root/etc/apt/sources.list"
  rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
  tar -C "$root" -cf "$TARBALL.part" . && mv "$TARBALL.part" "$TARBALL"
fi
docker import --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'CMD ["/bin/bash"]' "$TARBALL" "$TAG" >/dev/null
echo "base image $TAG imported from $TARBALL"
