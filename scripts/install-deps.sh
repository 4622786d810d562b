#!/usr/bin/env bash
# Installs what corestore needs to run on a Debian host or in its image:
# Debian packages (when run as root) and a virtualenv with the Python ones.
# Used by `make run`, `make test` and the Dockerfile, so they cannot drift.
set -euo pipefail

venv=${VENV:-.venv}
extras=${EXTRAS:-}
debian_packages=(redis-server rsync)
# Debian's restic is old but works; the image puts a pinned current release on
# PATH first, and then Debian's is not needed.
if ! command -v restic >/dev/null; then
  debian_packages+=(restic)
fi
if [ "${WITH_DOCKER:-0}" = 1 ]; then
  debian_packages+=(docker.io busybox-static)
fi

missing=()
for pkg in "${debian_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" \
    || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "install-deps: missing Debian packages: ${missing[*]} (run as root to install)" >&2
    exit 1
  fi
  echo "install-deps: installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null
fi

stamp="$venv/.installed${extras:+-$extras}"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check --upgrade pip
  "$venv/bin/pip" install -q --disable-pip-version-check -e ".${extras:+[$extras]}"
  touch "$stamp"
fi
