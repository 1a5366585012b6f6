#!/usr/bin/env bash
# Build the labelled quality corpus outside the repository (default /tmp/fpcli-quality, or OUT=DIR);
# with --openmsx or --simutrans, a tempo set of MIDI compositions instead (give it its own OUT).
# Installs the Debian packages it reads from when run as root and they are missing, then runs
# make_corpus.py with the repository's virtualenv Python (or python3).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
packages=(nexuiz-music ufoai-music planetblupi-music-ogg planetblupi-music-midi fluidsynth fluid-soundfont-gm sox
          libsox-fmt-all)
for arg in "$@"; do   # the OpenMSX tempo set reads only the OpenMSX MIDI files
    if [[ $arg == --openmsx ]]; then packages=(openttd-openmsx fluidsynth fluid-soundfont-gm sox); fi
    if [[ $arg == --simutrans ]]; then packages=(simutrans-data fluidsynth fluid-soundfont-gm sox); fi
done
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    if [[ $(id -u) -eq 0 ]]; then
        apt-get install -y --no-install-recommends "${missing[@]}"
    else
        echo "missing Debian packages: ${missing[*]} (install them with apt-get as root)" >&2
        exit 2
    fi
fi
python="$repo/.venv/bin/python"
[[ -x $python ]] || python=python3
exec "$python" "$here/make_corpus.py" --out "${OUT:-/tmp/fpcli-quality}" "$@"
