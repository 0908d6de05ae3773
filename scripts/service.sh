#!/usr/bin/env bash
# make install / make uninstall: netmetrics as two systemd services, netmetrics-sampler and
# netmetrics-web (README "Running as a service"). Both are idempotent: a second install updates
# the code and the venv and keeps the configuration and the data; uninstall keeps those too
# unless PURGE=1, which removes them and the service user.
set -euo pipefail
cd "$(dirname "$0")/.."

PREFIX=/opt/netmetrics        # the code and its venv (the units name these paths)
CONFIG=/etc/netmetrics/netmetrics.env
DATA=/var/lib/netmetrics
UNITS=/etc/systemd/system
USER_NAME=netmetrics
SERVICES=(netmetrics-sampler.service netmetrics-web.service)
# The sampler unit's drop-in that lets it reach a database on another host (IPAddressDeny=any).
DATABASE_DROPIN=$UNITS/netmetrics-sampler.service.d/database.conf

action=${1:?usage: service.sh install|uninstall}
say() { printf '%s: %s\n' "$action" "$*"; }
die() { printf '%s: %s\n' "$action" "$*" >&2; exit 1; }

# The configuration's settings into the environment, read as systemd's EnvironmentFile reads
# them (KEY=rest of the line), not run as shell code: `--iface eth0,eth1` needs no quotes.
load_config() {
    local key value
    while IFS='=' read -r key value; do
        case $key in '' | '#'*) continue ;; esac
        export "$key=$value"
    done < "$CONFIG"
}

do_install() {
    [ "$(id -u)" -eq 0 ] || die "installing system services needs root: run 'sudo make install'"
    command -v systemctl >/dev/null || die "systemd's systemctl is missing: without systemd, use 'sudo make run'"

    if ! id -u "$USER_NAME" >/dev/null 2>&1; then
        say "adding the system user $USER_NAME"
        useradd --system --home-dir "$DATA" --no-create-home --shell /usr/sbin/nologin "$USER_NAME"
    fi

    # The code: the checkout's tracked files (no venv, database or build output), replacing what an
    # earlier install put there. The venv stays, and setup.sh brings it up to date.
    say "copying the code to $PREFIX"
    mkdir -p "$PREFIX"
    find "$PREFIX" -mindepth 1 -maxdepth 1 ! -name .venv -exec rm -rf {} +
    if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
        git ls-files -z | tar --null -T - -cf - | tar -xf - -C "$PREFIX"
    else
        tar --exclude=./.venv --exclude=./var --exclude=./.git --exclude=./test-artifacts -cf - . | tar -xf - -C "$PREFIX"
    fi

    install -d -m 0755 "$(dirname "$CONFIG")"
    if [ ! -e "$CONFIG" ]; then
        say "writing $CONFIG (edit it, then restart the units)"
        install -m 0600 deploy/netmetrics.env "$CONFIG"
    else
        say "keeping $CONFIG"
        # Root's only, as systemd reads it: it may hold passwords (DATABASE_URL, REDIS_URL).
        if [ -n "$(find "$CONFIG" -perm /077)" ]; then
            say "making $CONFIG root's only (it may hold passwords)"
            chmod go-rwx "$CONFIG"
        fi
    fi
    install -d -m 0750 -o "$USER_NAME" -g "$USER_NAME" "$DATA"

    # The venv, system packages and kernel headers as for 'make setup', and the migrations of the
    # configured database; the data then belongs to the service user.
    load_config
    # Not handed to a sudo user, as setup.sh does for a checkout: the service's code is root's.
    (cd "$PREFIX" && env -u SUDO_UID -u SUDO_GID -u SUDO_USER bash scripts/setup.sh)
    chown -R "$USER_NAME:$USER_NAME" "$DATA"

    for unit in "${SERVICES[@]}"; do install -m 0644 "deploy/$unit" "$UNITS/$unit"; done
    database_dropin
    systemctl enable "${SERVICES[@]}" 2>&1 | sed "s/^/$action: /"
    if [ -d /run/systemd/system ]; then
        systemctl daemon-reload
        systemctl restart "${SERVICES[@]}"
        say "running: systemctl status ${SERVICES[*]}; the dashboard is at http://${NETMETRICS_BIND:-127.0.0.1}:${NETMETRICS_PORT:-8000}/"
    else
        say "systemd is not running here (not PID 1): the units are enabled and start at the next boot"
    fi
}

# The sampler unit sends no IP packet (IPAddressDeny=any), except to its database when
# DATABASE_URL names one on another host: a drop-in allows that host's addresses (resolved now:
# run make install again when they change), and AF_INET6 for an IPv6 one. A Unix socket needs
# none of it.
database_dropin() {
    local host addresses
    host=$("$PREFIX/.venv/bin/python" - <<'PY'
import os
from urllib.parse import parse_qs, unquote, urlsplit

url = os.environ.get("DATABASE_URL", "").strip()
parts = urlsplit(url)
host = parse_qs(parts.query).get("host", [""])[0] or unquote(parts.hostname or "")
print("" if not url or host.startswith("/") else host)
PY
    )
    if [ -z "$host" ]; then
        if [ -e "$DATABASE_DROPIN" ]; then
            say "removing $DATABASE_DROPIN (no database on another host)"
            remove_database_dropin
        fi
        return
    fi
    addresses=$({ getent ahosts "$host" || true; } | awk '{ print $1 }' | sort -u | tr '\n' ' ')
    [ -n "$addresses" ] || die "DATABASE_URL's host $host does not resolve: the sampler unit could not reach it"
    say "the sampler may reach its database at $host (${addresses% })"
    mkdir -p "$(dirname "$DATABASE_DROPIN")"
    {
        echo "# make install: DATABASE_URL's host, $host, from $CONFIG; no other IP traffic."
        echo "[Service]"
        echo "IPAddressAllow=${addresses% }"
        [[ $addresses != *:* ]] || echo "RestrictAddressFamilies=AF_INET6"
    } >"$DATABASE_DROPIN"
}

# Only ours: the directory may hold the operator's drop-ins too (systemctl edit).
remove_database_dropin() {
    rm -f "$DATABASE_DROPIN"
    rmdir "$(dirname "$DATABASE_DROPIN")" 2>/dev/null || true
}

do_uninstall() {
    [ "$(id -u)" -eq 0 ] || die "removing system services needs root: run 'sudo make uninstall'"
    if [ -d /run/systemd/system ]; then
        systemctl stop "${SERVICES[@]}" 2>/dev/null || true
    fi
    if [ "${PURGE:-0}" = 1 ] && id -u "$USER_NAME" >/dev/null 2>&1 && pgrep -u "$USER_NAME" >/dev/null; then
        die "PURGE=1 removes the user $USER_NAME, which still runs processes ($(pgrep -d, -u "$USER_NAME")): stop them first"
    fi
    # The sampler leaves its programs attached and counting when it stops (--persist): remove
    # them from every interface, with their pins.
    if [ -x "$PREFIX/.venv/bin/python" ]; then
        (cd "$PREFIX" && .venv/bin/python manage.py runsampler --detach '*' 2>&1 | sed "s/^/$action: /") ||
            die "could not detach the sampler's programs (see above); nothing was removed"
    fi
    rm -rf /sys/fs/bpf/netmetrics
    rmdir /run/netmetrics 2>/dev/null || true  # the units' locks, once no sampler holds one
    remove_database_dropin
    for unit in "${SERVICES[@]}"; do
        if [ -e "$UNITS/$unit" ]; then
            systemctl disable "$unit" 2>&1 | sed "s/^/$action: /"
            rm -f "$UNITS/$unit"
        fi
    done
    if [ -d /run/systemd/system ]; then systemctl daemon-reload; fi
    rm -rf "$PREFIX"
    if [ "${PURGE:-0}" = 1 ]; then
        say "PURGE=1: removing /etc/netmetrics, /var/lib/netmetrics and the user $USER_NAME"
        rm -rf "$(dirname "$CONFIG")" "$DATA"
        if id -u "$USER_NAME" >/dev/null 2>&1; then userdel "$USER_NAME"; fi
    else
        say "kept /etc/netmetrics and /var/lib/netmetrics (PURGE=1 removes them)"
    fi
    say "removed the units and $PREFIX"
}

case $action in
    install | uninstall) "do_$action" ;;
    *) die "usage: service.sh install|uninstall" ;;
esac
