#!/usr/bin/env bash
# Makes the image deploy/Dockerfile starts FROM, debian:bookworm-slim, without
# a container registry: debootstrap's minbase of Debian 12, trimmed the way the
# official slim image is (no documentation, manual pages, locales or apt
# lists), imported with `podman import` under the official name, where
# `buildah bud --pull=never` finds it. Cached in two places: the image stays in
# the container store (nothing to do while it is there), and the root file
# system's tarball stays in the project's cache outside the checkout
# (${IMAGE_GATEWAY_CACHE:-~/.cache/image-gateway}/container-base), so that a
# cleaned store is refilled without debootstrap.
# Needs root, debootstrap, podman and Debian's package mirror.
set -euo pipefail
IMAGE=docker.io/library/debian:bookworm-slim
CACHE="${IMAGE_GATEWAY_CACHE:-$HOME/.cache/image-gateway}/container-base"
TARBALL="$CACHE/debian-bookworm-slim.tar"
mkdir -p "$CACHE"
# One builder at a time: a second waits, then finds the first one's result.
exec 9>"$CACHE/base-image.lock"
flock 9
if podman image exists "$IMAGE"; then
  echo "base image: $IMAGE already in the container store"
  exit 0
fi
if [ ! -s "$TARBALL" ]; then
  root="$(mktemp -d "$CACHE/rootfs.XXXXXX")"
  trap 'rm -rf "$root"' EXIT
  debootstrap --variant=minbase bookworm "$root" >"$CACHE/debootstrap.log" 2>&1 \
    || { tail -20 "$CACHE/debootstrap.log" >&2; exit 1; }
  # What the slim image leaves out, now and in every later apt-get install.
  cat >"$root/etc/dpkg/dpkg.cfg.d/slim" <<'CFG'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
path-exclude /usr/share/lintian/*
CFG
  cat >"$root/etc/apt/apt.conf.d/slim" <<'CFG'
APT::Install-Recommends "false";
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/*.bin || true"; };
CFG
  find "$root/usr/share/doc" -mindepth 2 ! -name copyright ! -type d -delete
  find "$root/usr/share/doc" -depth -type d -empty -delete
  rm -rf "$root"/usr/share/{man,info,lintian}/* "$root"/var/lib/apt/lists/* \
    "$root"/var/cache/apt/archives/*.deb "$root"/var/cache/apt/*.bin "$root"/var/log/*.log
  find "$root/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} +
  tar --numeric-owner -C "$root" -cf "$TARBALL.part" .
  mv "$TARBALL.part" "$TARBALL"
fi
podman import --quiet --change 'CMD ["bash"]' "$TARBALL" "$IMAGE" >/dev/null
echo "base image: $IMAGE imported from $TARBALL"
