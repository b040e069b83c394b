#!/usr/bin/env bash
# Installs the Debian packages etsd builds and tests with, when missing, and
# starts epmd. Safe to run again: it does nothing when all is there.
set -euo pipefail

# Each name is on Debian 12 and Debian 13 alike: libclang-rt-dev is the
# sanitizer runtime of the default clang (14 on 12, 19 on 13); mmdebstrap and
# bubblewrap build and enter the roots of newer OTP releases (otp-root.sh).
packages=(build-essential pkg-config erlang-dev erlang-nox erlang-common-test
          erlang-doc libuv1-dev libssl-dev openssl check zlib1g-dev rebar3 clang
          libclang-rt-dev valgrind mmdebstrap bubblewrap libhttp-parser-dev libsystemd-dev)

missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" \
        || missing+=("$p")
done

if [ ${#missing[@]} -gt 0 ]; then
    echo "install-deps: installing ${missing[*]}"
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" >/dev/null
fi

# promtool checks the metrics text: Debian 13 ships it as its own package,
# Debian 12 only inside prometheus.
if ! command -v promtool >/dev/null; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    [ ${#missing[@]} -gt 0 ] || $sudo apt-get update -qq
    echo "install-deps: installing promtool"
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
        promtool >/dev/null 2>&1 ||
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
        prometheus >/dev/null
fi

# Distributed Erlang needs epmd; the suites and the demo use the local one.
if ! epmd -names >/dev/null 2>&1; then
    epmd -daemon
fi
# erl needs a cookie file to start distributed; create one as erl would.
if [ ! -f "$HOME/.erlang.cookie" ]; then
    erl -noshell -sname "cookie_$$" -eval 'halt().' >/dev/null 2>&1 || true
fi
