#!/usr/bin/env bash
# System packages: Debian's Fashion-MNIST (the default dataset) and a C compiler (Sparta's
# native CPU site is built with it on first use; without one the site runs in torch
# operations, and its tests skip). Idempotent.
set -euo pipefail
packages=()
[ -d /usr/share/datasets/fashion-mnist ] || packages+=(dataset-fashion-mnist)
command -v cc >/dev/null || packages+=(gcc libc6-dev)
[ ${#packages[@]} -eq 0 ] && exit 0
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get install -y -q "${packages[@]}" >/dev/null 2>&1 || {
    $SUDO apt-get update -q >/dev/null
    $SUDO apt-get install -y -q "${packages[@]}" >/dev/null
}
