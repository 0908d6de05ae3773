#!/usr/bin/env bash
# make setup: system packages (when root and missing), kernel headers, the venv, migrations.
# Idempotent and quick when everything is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf 'setup: %s\n' "$*"; }
warn() { printf 'setup: WARNING: %s\n' "$*" >&2; }

release=$(uname -r)
modules=/lib/modules/$release
apt_updated=
apt_install() {
    [ -n "$apt_updated" ] || { apt-get update -qq; apt_updated=1; }
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

have_headers() { [ -e "$modules/build/include/generated/autoconf.h" ] || [ -e /sys/kernel/kheaders.tar.xz ]; }

# Debian's headers for a kernel that has no package of its own (a custom build): the newest
# linux-headers-<version>-<arch> tree, with its -common half as "source", which is where BCC
# looks for the architecture-independent headers.
link_debian_headers() {
    local arch build common
    arch=$(dpkg --print-architecture)
    build=$(ls -d /usr/src/linux-headers-*-"$arch" 2>/dev/null | sort -V | tail -n 1)
    [ -n "$build" ] || return 1
    common=${build%-"$arch"}-common
    mkdir -p "$modules"
    ln -sfn "$build" "$modules/build"
    if [ -d "$common" ]; then ln -sfn "$common" "$modules/source"; else ln -sfn "$build" "$modules/source"; fi
    warn "kernel headers for $release are not packaged; using $(basename "$build") instead (not the exact version: fine for netmetrics' program, which reads only stable UAPI headers)"
}

if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
    missing=()
    for pkg in python3-bpfcc python3-venv iproute2; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'ok installed' || missing+=("$pkg")
    done
    if [ ${#missing[@]} -gt 0 ]; then say "installing ${missing[*]}"; apt_install "${missing[@]}"; fi
    if ! have_headers; then
        [ -n "$apt_updated" ] || { apt-get update -qq; apt_updated=1; }
        if apt-cache show "linux-headers-$release" >/dev/null 2>&1; then
            say "installing linux-headers-$release"
            apt_install "linux-headers-$release"
        else
            say "no linux-headers-$release package; installing linux-headers-$(dpkg --print-architecture)"
            apt_install "linux-headers-$(dpkg --print-architecture)"
            link_debian_headers || warn "could not find the installed headers under /usr/src"
        fi
    fi
elif ! have_headers || [ ! -d /usr/lib/python3/dist-packages/bcc ]; then
    warn "not root: cannot install python3-bpfcc or kernel headers; the sampler needs them (run 'sudo make setup')"
fi

# The venv is made from Debian's python so that Debian's pure-Python bcc package works in it;
# only that one package is linked in, not the rest of the system's site-packages.
if [ ! -x .venv/bin/python ]; then
    say "creating .venv"
    /usr/bin/python3 -m venv .venv
fi
site=$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
if [ -d /usr/lib/python3/dist-packages/bcc ] && [ ! -e "$site/bcc" ]; then
    ln -s /usr/lib/python3/dist-packages/bcc "$site/bcc"
fi
if ! cmp -s requirements.lock .venv/.requirements.lock; then
    say "installing Python packages"
    .venv/bin/pip install -q --disable-pip-version-check -r requirements.lock
    cp requirements.lock .venv/.requirements.lock
fi

.venv/bin/python manage.py migrate --no-input -v 0

# Under sudo, leave the checkout's generated files to the user who ran sudo, so that
# 'make test' and 'manage.py runserver' keep working without root.
if [ -n "${SUDO_UID:-}" ] && [ "$(id -u)" -eq 0 ]; then
    chown -R "$SUDO_UID:$SUDO_GID" .venv
    [ -d var ] && chown -R "$SUDO_UID:$SUDO_GID" var
fi
exit 0
