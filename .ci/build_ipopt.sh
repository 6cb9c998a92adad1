#!/usr/bin/env bash
# Build the `ipopt` executable (AMPL interface) that Pyomo's reference solver uses.
#
#   bash .ci/build_ipopt.sh [BIN_DIR]        (default BIN_DIR: .venv/bin)
#
# No wheel or Debian binary package ships an `ipopt` executable, but Debian ships the
# Ipopt library (coinor-libipopt-dev) and the AMPL solver library (libamplsolver-dev).
# The AMPL driver (ampl_ipopt.cpp + AmplTNLP.cpp) is compiled here from Debian's own
# source package of coinor-ipopt, fetched with `apt-get source --download-only` through a
# deb-src list and apt state kept in a temporary directory, so the system's apt
# configuration is untouched. See docs/mechanisms.md and the design note toolchain.md.
#
# Idempotent: an existing BIN_DIR/ipopt that runs is kept (seconds). Never fails the
# caller: when something is missing (not root, no apt-get, no network, compile error) it
# says what and why, and exits 0; the Pyomo reference tests then skip with a reason.
set -uo pipefail

BIN_DIR="${1:-.venv/bin}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BUILD_DIR="${IPOPT_BUILD_DIR:-$ROOT/.ipopt-build}"
TARGET="$BIN_DIR/ipopt"

say() { echo "build_ipopt: $*"; }
give_up() { say "NOT BUILT: $*"; say "the Pyomo reference solver and its tests will be skipped"; exit 0; }

mkdir -p "$BIN_DIR" || give_up "cannot create $BIN_DIR"
BIN_DIR="$(cd "$BIN_DIR" && pwd)"
TARGET="$BIN_DIR/ipopt"

if [ -x "$TARGET" ] && "$TARGET" -v >/dev/null 2>&1; then
    say "already present: $("$TARGET" -v 2>/dev/null | head -1) at $TARGET"
    exit 0
fi

command -v apt-get >/dev/null 2>&1 || give_up "no apt-get on this machine (Debian/Ubuntu only)"

export DEBIAN_FRONTEND=noninteractive
PACKAGES="coinor-libipopt-dev libamplsolver-dev pkg-config libblas-dev liblapack-dev g++"
missing=""
for p in $PACKAGES; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
    [ "$(id -u)" = 0 ] || give_up "needs root to install the Debian packages$missing (run: sudo bash $0 $BIN_DIR)"
    say "installing Debian packages:$missing"
    apt-get update -qq || give_up "apt-get update failed (no network?)"
    apt-get install -y -qq --no-install-recommends $missing >/dev/null \
        || give_up "apt-get install of$missing failed"
fi

mkdir -p "$BUILD_DIR" || give_up "cannot create $BUILD_DIR"
cd "$BUILD_DIR" || give_up "cannot enter $BUILD_DIR"

# Debian's source package of the installed library version.
SRC_TARBALL="$(ls coinor-ipopt_*.orig.tar.* 2>/dev/null | head -1)"
if [ -z "$SRC_TARBALL" ]; then
    CODENAME="$(. /etc/os-release 2>/dev/null; echo "${VERSION_CODENAME:-bookworm}")"
    APT_TMP="$(mktemp -d)"
    trap 'rm -rf "$APT_TMP"' EXIT
    mkdir -p "$APT_TMP/lists/partial"
    KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg
    SIGNED=""
    [ -f "$KEYRING" ] && SIGNED="[signed-by=$KEYRING] "
    echo "deb-src ${SIGNED}http://deb.debian.org/debian $CODENAME main" > "$APT_TMP/sources.list"
    APT_OPTS=(-o "Dir::Etc::SourceList=$APT_TMP/sources.list" -o "Dir::Etc::SourceParts=/dev/null"
              -o "Dir::State::Lists=$APT_TMP/lists" -o "APT::Sandbox::User=root")
    say "fetching Debian's coinor-ipopt source package ($CODENAME)"
    apt-get "${APT_OPTS[@]}" update -qq || give_up "apt-get update of the deb-src list failed"
    apt-get "${APT_OPTS[@]}" source --download-only coinor-ipopt >/dev/null \
        || give_up "apt-get source --download-only coinor-ipopt failed"
    SRC_TARBALL="$(ls coinor-ipopt_*.orig.tar.* 2>/dev/null | head -1)"
    [ -n "$SRC_TARBALL" ] || give_up "source tarball not found after download"
fi

SRC_TOP="$(tar tf "$SRC_TARBALL" | head -1 | cut -d/ -f1)"
if [ ! -f "$SRC_TOP/Ipopt/src/Apps/AmplSolver/ampl_ipopt.cpp" ]; then
    tar xf "$SRC_TARBALL" "$SRC_TOP/Ipopt/src" || give_up "cannot unpack $SRC_TARBALL"
fi
S="$SRC_TOP/Ipopt/src"
INCLUDES=(-I/usr/include/coin -I/usr/include/ampl-netlib-solvers)
while IFS= read -r d; do INCLUDES+=(-I"$d"); done < <(find "$S" -type d)
# The installed headers are configured without config_ipopt.h; declare the C++ headers
# the driver needs instead of running the source tree's configure script.
DEFINES=(-DHAVE_CSTRING -DHAVE_CSTDDEF -DHAVE_CSTDLIB -DHAVE_CSTDIO -DHAVE_CMATH
         -DHAVE_CFLOAT -DHAVE_CASSERT -DHAVE_CSTDARG)
say "compiling the AMPL driver"
g++ -O2 "${DEFINES[@]}" "${INCLUDES[@]}" -o "$BUILD_DIR/ipopt" \
    "$S/Apps/AmplSolver/ampl_ipopt.cpp" "$S/Apps/AmplSolver/AmplTNLP.cpp" \
    -lipopt -lamplsolver -ldl || give_up "compiling ampl_ipopt.cpp failed"

"$BUILD_DIR/ipopt" -v >/dev/null 2>&1 || give_up "the compiled ipopt does not run"
install -m 0755 "$BUILD_DIR/ipopt" "$TARGET" || give_up "cannot install into $BIN_DIR"
say "built $("$TARGET" -v 2>/dev/null | head -1) at $TARGET"
exit 0
