#!/usr/bin/env bash
# Runs a command with a newer OTP release: a Debian root file system that holds
# it, built once per machine with mmdebstrap and entered with bubblewrap.
#
#   test/otp-root.sh RELEASE [COMMAND ARG...]    RELEASE: 25 (this machine), 27, 29
#   test/otp-root.sh RELEASE --path              print the root's folder, building it
#
# 27 is Debian 13 (trixie), 29 is sid. The roots live in ETSD_OTP_CACHE
# (default /var/cache/etsd-otp), outside any checkout, and are reused. bwrap's
# mounts live in its own mount namespace and vanish with it, so nothing stays
# mounted on the host, and deleting a root never reaches the host's /dev.
# Inside, the project folder, /tmp and $HOME are the host's own, at the same
# paths, /etc/hosts too (so -sname nodes resolve this host's short name), and
# the network is the host's: the host's epmd serves both. The
# cache is there too, so a node in one root can start a peer in another
# (the mixed-release suite does).
set -euo pipefail

release=${1:?usage: otp-root.sh 25|27|29 [--path | COMMAND...]}
shift
cache=${ETSD_OTP_CACHE:-/var/cache/etsd-otp}
HOME=${HOME:-$(getent passwd "$(id -u)" | cut -d: -f6)}

case "$release" in
    25) [ "${1:-}" = --path ] && { echo /; exit 0; }
        exec "$@" ;;
    27) suite=trixie ;;
    29) suite=sid ;;
    *) echo "otp-root.sh: no root for OTP $release (25, 27 or 29)" >&2; exit 2 ;;
esac
root=$cache/otp$release

# The Debian mirror this machine already uses (deb822 or one-line sources).
mirror() {
    local m
    m=$(grep -hE '^(URIs:|deb )' /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null \
        | grep -oE 'https?://[^ ]*/debian/?' | grep -v security | head -n 1)
    echo "${m:-http://deb.debian.org/debian}"
}

build_root() {
    command -v mmdebstrap >/dev/null && command -v bwrap >/dev/null || {
        echo "otp-root.sh: installing mmdebstrap and bubblewrap" >&2
        local sudo=""; [ "$(id -u)" -eq 0 ] || sudo=sudo
        $sudo apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
            mmdebstrap bubblewrap >/dev/null
    }
    mkdir -p "$cache"
    local tmp=$root.tmp m
    m=$(mirror)
    rm -rf "$tmp"
    echo "otp-root.sh: building the OTP $release root (Debian $suite from $m) in $root" >&2
    # sid's Release file may be past its Valid-Until on a mirror snapshot.
    mmdebstrap --quiet --variant=apt --aptopt='Acquire::Check-Valid-Until "false"' \
        --include=erlang-nox,erlang-dev,erlang-src,erlang-common-test,rebar3,libuv1t64,libssl3t64,zlib1g,openssl,procps,bubblewrap \
        "$suite" "$tmp" "deb [trusted=yes] $m $suite main" >&2
    local got
    got=$(enter "$tmp" erl -noshell -eval 'io:put_chars(erlang:system_info(otp_release)), halt().')
    if [ "$got" != "$release" ]; then
        echo "otp-root.sh: Debian $suite now ships OTP $got, not $release" >&2
        exit 1
    fi
    mv "$tmp" "$root"
}

enter() {
    local dir=$1; shift
    local project
    project=$(cd "$(dirname "$0")/.." && pwd)
    exec_args=(--bind "$dir" / --dev /dev --proc /proc --bind /tmp /tmp
               --bind "$HOME" "$HOME" --bind "$project" "$project" --bind "$cache" "$cache"
               --ro-bind /etc/resolv.conf /etc/resolv.conf --ro-bind /etc/hosts /etc/hosts
               --die-with-parent
               --setenv HOME "$HOME" --setenv PATH /usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin
               --chdir "$PWD")
    # The caller's folder may be a checkout elsewhere (a fresh clone in CI).
    case "$PWD" in "$project"*|/tmp*|"$HOME"*) ;; *) exec_args+=(--bind "$PWD" "$PWD") ;; esac
    bwrap "${exec_args[@]}" "$@"
}

# One build of a root at a time per machine: a second caller waits for the first.
mkdir -p "$cache"
exec 9>"$cache/.otp$release.lock"
flock 9
[ -x "$root/usr/bin/erl" ] || build_root
flock -u 9

if [ "${1:-}" = --path ]; then echo "$root"; exit 0; fi
[ $# -gt 0 ] || set -- erl
enter "$root" "$@"
