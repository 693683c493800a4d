#!/usr/bin/env bash
# System packages: Debian's Fashion-MNIST (the default dataset). Idempotent.
set -euo pipefail
[ -d /usr/share/datasets/fashion-mnist ] && exit 0
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1 || {
    $SUDO apt-get update -q >/dev/null
    $SUDO apt-get install -y -q dataset-fashion-mnist >/dev/null
}
