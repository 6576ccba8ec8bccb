#!/bin/sh
# Print the path of a Python >= 3.12 for the project's virtual environment, or nothing.
# Tried in order: python<version in .python-version>, python3.13, python3.12, python3 on PATH
# (pyenv shims resolve through .python-version), then pyenv's installed versions.
ok() { "$1" -c 'import sys; sys.exit(sys.version_info < (3, 12))' >/dev/null 2>&1; }
want=$(cat "$(dirname "$0")/../.python-version" 2>/dev/null | head -n 1 | tr -d '[:space:]')
for name in ${want:+python$want} python3.13 python3.12 python3; do
  path=$(command -v "$name" 2>/dev/null) || continue
  if ok "$path"; then
    "$path" -c 'import sys; print(sys.executable)'
    exit 0
  fi
done
root=${PYENV_ROOT:-$HOME/.pyenv}
for path in "$root"/versions/${want:-3.12}*/bin/python3 "$root"/versions/3.1[2-9]*/bin/python3; do
  if [ -x "$path" ] && ok "$path"; then
    echo "$path"
    exit 0
  fi
done
if command -v uv >/dev/null 2>&1; then
  path=$(uv python find '>=3.12' 2>/dev/null) && ok "$path" && echo "$path"
fi
