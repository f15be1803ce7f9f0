#!/usr/bin/env bash
# Debian packages the tests need beside the Python ones: espeak-ng (the speech kind's local
# voice; synthesises real speech for the transcription tests), sox (resamples and mixes
# audio; with libsox-fmt-mp3 it makes mp3, OpenAI's default speech format) and kcat (runs the example of
# docs/other-languages.md, as a producer in another language would). Installs only what is missing.
# usage: deploy/local/system-packages.sh
set -euo pipefail

PACKAGES=(espeak-ng sox libsox-fmt-mp3 kcat)

missing=()
for pkg in "${PACKAGES[@]}"; do
  # dpkg-query is the source of truth; a binary on PATH could come from somewhere else.
  status="$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)"
  [[ "$status" == "install ok installed" ]] || missing+=("$pkg")
done

if (( ${#missing[@]} == 0 )); then
  echo "[fleet] system packages present: ${PACKAGES[*]}" >&2
  exit 0
fi

if [[ "$(id -u)" != 0 ]]; then
  echo "[fleet] missing system packages: ${missing[*]}" >&2
  echo "[fleet] install them as root: sudo apt-get install -y ${missing[*]}" >&2
  exit 1
fi

command -v apt-get >/dev/null || {
  echo "error: apt-get not found; install ${missing[*]} with this system's package manager" >&2
  exit 1
}

echo "[fleet] installing ${missing[*]} with apt-get" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "[fleet] installed ${missing[*]}" >&2
