#!/usr/bin/env bash
# Builds and installs pgvector into the PostgreSQL server the tests start (the one
# harness/postgres.ts findPgBin() picks), for Debian machines whose release has no pgvector
# package for that server (bookworm and PostgreSQL 15). Does nothing when the extension is already
# there. Run as root, or as a user with sudo. Usage: bash .ci/install-pgvector.sh
set -euo pipefail

# The newer Debian release whose source package is built. bookworm-backports has no pgvector;
# trixie has 0.8.0, which supports PostgreSQL 13 and later.
SOURCE_SUITE=trixie
SOURCE_PACKAGE=pgvector
DEFAULT_MIRROR=http://deb.debian.org/debian

if [[ $(id -u) -eq 0 ]]; then
  SUDO=()
elif command -v sudo >/dev/null 2>&1; then
  SUDO=(sudo)
else
  SUDO=()
fi

has_server_binaries() {
  [[ -x "$1/initdb" && -x "$1/pg_ctl" ]]
}

# Same choice as findPgBin() in harness/postgres.ts: the first initdb on PATH (resolved
# through symlinks such as Debian's /usr/local/bin ones), else the highest installed version.
find_pg_bin() {
  local dir real
  local -a path_dirs
  IFS=: read -r -a path_dirs <<<"${PATH:-}"
  for dir in "${path_dirs[@]}"; do
    [[ -n "$dir" && -e "$dir/initdb" ]] || continue
    real=$(dirname "$(readlink -f "$dir/initdb")") || continue
    if has_server_binaries "$real"; then
      echo "$real"
      return 0
    fi
  done
  for dir in $(compgen -G '/usr/lib/postgresql/*/bin' | sort -rV); do
    if has_server_binaries "$dir"; then
      echo "$dir"
      return 0
    fi
  done
  return 1
}

# The Debian mirror this machine already uses (a local or snapshot mirror in some images), so the
# source comes from the same place as the binaries.
debian_mirror() {
  local uri
  uri=$(
    {
      grep -hs '^URIs:' /etc/apt/sources.list.d/*.sources | awk '{ print $2 }'
      grep -hsE '^deb[[:space:]]' /etc/apt/sources.list /etc/apt/sources.list.d/*.list |
        sed -E 's/\[[^]]*\]//' | awk '{ print $2 }'
    } | grep -v -- '-security' | grep -E '/debian/?$' | head -n 1
  ) || true
  echo "${uri:-$DEFAULT_MIRROR}"
}

is_installed() {
  [[ $(dpkg-query -W -f='${Status}' "$1" 2>/dev/null) == 'install ok installed' ]]
}

pg_bin=$(find_pg_bin) || {
  echo 'error: no PostgreSQL server binaries (initdb, pg_ctl) found; install postgresql first' >&2
  exit 1
}
major=$("$pg_bin/postgres" --version | sed -nE 's/.*\(PostgreSQL\) ([0-9]+).*/\1/p')
[[ -n "$major" ]] || {
  echo "error: cannot tell the version of $pg_bin/postgres" >&2
  exit 1
}
pg_config="$pg_bin/pg_config"

if [[ -x "$pg_config" && -f "$("$pg_config" --sharedir)/extension/vector.control" ]]; then
  echo "pgvector already installed for PostgreSQL ${major} ($("$pg_config" --sharedir)/extension)"
  exit 0
fi

if [[ $(id -u) -ne 0 && ${#SUDO[@]} -eq 0 ]]; then
  echo 'error: pgvector is missing and installing it needs root or sudo' >&2
  exit 1
fi

# Server headers at the installed server's exact version when the archive still has it: the
# newest postgresql-server-dev would pull a newer postgresql-client and upgrade the server too.
dev_package="postgresql-server-dev-${major}"
server_package=$(dpkg-query -S "$pg_bin/postgres" 2>/dev/null | cut -d: -f1) || true
packages=()
for tool in make gcc libc6-dev dpkg-dev; do
  is_installed "$tool" || packages+=("$tool")
done
if ! is_installed "$dev_package"; then
  "${SUDO[@]}" apt-get update
  if [[ -n "$server_package" ]]; then
    server_version=$(dpkg-query -W -f='${Version}' "$server_package")
    if apt-cache madison "$dev_package" | awk -F'|' '{ gsub(/ /, "", $2); print $2 }' |
      grep -qxF "$server_version"; then
      dev_package+="=${server_version}"
    fi
  fi
  packages+=("$dev_package")
elif [[ ${#packages[@]} -gt 0 ]]; then
  "${SUDO[@]}" apt-get update
fi
if [[ ${#packages[@]} -gt 0 ]]; then
  echo "installing ${packages[*]}"
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
    "${packages[@]}"
fi
[[ -x "$pg_config" ]] || {
  echo "error: $pg_config is still missing after installing ${dev_package}" >&2
  exit 1
}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# A private apt configuration holding only the deb-src line: the machine's own sources, package
# lists and caches stay as they were, and nothing is left behind to clean up or to break a later
# apt-get update.
mirror=$(debian_mirror)
mkdir -p "$work/apt/lists/partial" "$work/apt/cache/archives/partial"
echo "deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] ${mirror} ${SOURCE_SUITE} main" \
  >"$work/apt/sources.list"
apt_private=(
  -o "Dir::Etc::SourceList=$work/apt/sources.list"
  -o Dir::Etc::SourceParts=/dev/null
  -o "Dir::State::Lists=$work/apt/lists"
  -o "Dir::Cache=$work/apt/cache"
  # Under root apt downloads as the _apt user, which cannot enter the mktemp directory (0700).
  -o APT::Sandbox::User="$(id -un)"
)
echo "fetching the ${SOURCE_PACKAGE} source package from ${mirror} ${SOURCE_SUITE}"
apt-get "${apt_private[@]}" -qq update
(cd "$work" && apt-get "${apt_private[@]}" source "$SOURCE_PACKAGE")
src=$(compgen -G "$work/${SOURCE_PACKAGE}-*/" | head -n 1)
[[ -n "$src" && -f "$src/Makefile" ]] || {
  echo "error: apt-get source ${SOURCE_PACKAGE} unpacked nothing usable into $work" >&2
  exit 1
}

# OPTFLAGS='' as in Debian's own build: pgvector defaults to -march=native, which ties the library
# to this CPU (a CI image built on one machine may run on another).
make -C "$src" -j"$(nproc)" PG_CONFIG="$pg_config" OPTFLAGS=''
"${SUDO[@]}" make -C "$src" install PG_CONFIG="$pg_config" OPTFLAGS=''

control="$("$pg_config" --sharedir)/extension/vector.control"
[[ -f "$control" ]] || {
  echo "error: make install did not produce $control" >&2
  exit 1
}
echo "installed pgvector $(sed -nE "s/^default_version = '(.*)'/\1/p" "$control") for PostgreSQL ${major}"
