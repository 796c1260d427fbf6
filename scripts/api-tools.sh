#!/usr/bin/env bash
# Installs the pinned API tools (scripts/api-tools.txt) into a project-local venv, .tools/venv,
# and prints the venv's bin folder. Reinstalls only when the pins change. Needs python3.11 (or
# PYTHON) and a package index (PyPI).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
tools="$root/.tools"
venv="$tools/venv"
pins="$root/scripts/api-tools.txt"
python="${PYTHON:-$(command -v python3.11 || command -v python3)}"
stamp="$venv/.pins"
if [[ ! -x "$venv/bin/python" ]] || ! cmp -s "$pins" "$stamp"; then
    rm -rf "$venv"
    mkdir -p "$tools"
    "$python" -m venv "$venv" >&2
    PIP_CACHE_DIR="$tools/pip-cache" "$venv/bin/pip" install --quiet --disable-pip-version-check \
        -r "$pins" >&2
    cp "$pins" "$stamp"
fi
echo "$venv/bin"
