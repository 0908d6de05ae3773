#!/usr/bin/env bash
# make run: the sampler (root) and the web server (the user who ran sudo) until Ctrl-C.
set -uo pipefail
cd "$(dirname "$0")/.."

die() { printf 'netmetrics: %s\n' "$*" >&2; exit 1; }

# BIND: the web server's address (127.0.0.1). Off loopback everyone must log in
# (NETMETRICS_AUTH=required), so the check comes before anything starts: with nobody who
# could log in it says how to make a login, in one line.
export NETMETRICS_BIND=${BIND:-127.0.0.1}
.venv/bin/python manage.py checkaccess || exit 1
[ "$(id -u)" -eq 0 ] || die "the sampler needs root to attach its eBPF programs: run 'sudo make run'"
# IFACE: names and patterns (eth0,eth1 or 'en*'); without it, every interface that is up but
# loopback and container/VM plumbing (runsampler --all), with a host total.
if [ -n "${IFACE:-}" ]; then selection=(--iface "$IFACE"); what=$IFACE; else selection=(--all); what="every interface (--all)"; fi
port=${PORT:-8000}
# The address to browse to; off loopback, the names the server answers to are this host's
# name and addresses, unless NETMETRICS_ALLOWED_HOSTS says.
case $NETMETRICS_BIND in
    0.0.0.0 | ::) host=$(hostname) ;;
    *:*) host="[$NETMETRICS_BIND]" ;;
    *) host=$NETMETRICS_BIND ;;
esac
case $NETMETRICS_BIND in
    127.* | ::1 | localhost) ;;
    *)
        if [ -z "${NETMETRICS_ALLOWED_HOSTS:-}" ]; then
            names="127.0.0.1,localhost,[::1],$(hostname),$(hostname -f 2>/dev/null || true)"
            for address in $(hostname -I 2>/dev/null); do
                case $address in *:*) names+=",[$address]" ;; *) names+=",$address" ;; esac
            done
            export NETMETRICS_ALLOWED_HOSTS=$names
        fi
        ;;
esac

# The web server needs no root: under sudo it runs as the user who ran sudo.
as_user=()
if [ -n "${SUDO_USER:-}" ] && [ "$SUDO_USER" != root ]; then as_user=(runuser -u "$SUDO_USER" --); fi

.venv/bin/python manage.py runsampler "${selection[@]}" &
sampler=$!
"${as_user[@]}" .venv/bin/python manage.py serve --port "$port" &
web=$!

printf '\nnetmetrics: measuring %s; dashboard http://%s:%s/ , API http://%s:%s/api/metrics/realtime , admin http://%s:%s/admin/\n' \
    "$what" "$host" "$port" "$host" "$port" "$host" "$port"
if ! .venv/bin/python manage.py shell -v 0 -c 'from django.contrib.auth.models import User; raise SystemExit(not User.objects.filter(is_superuser=True).exists())' 2>/dev/null; then
    printf 'netmetrics: to browse history in the admin, create a login once: .venv/bin/python manage.py createsuperuser\n'
fi
printf 'netmetrics: Ctrl-C stops both and detaches the programs.\n\n'

stop() { kill -TERM "$sampler" "$web" 2>/dev/null; }
trap stop INT TERM
# Whichever ends first (Ctrl-C, or an error such as a missing interface) ends the other.
wait -n "$sampler" "$web"
stop
wait "$sampler" 2>/dev/null; sampler_status=$?
wait "$web" 2>/dev/null
# The sampler's own exit status says whether it failed (128+15 after our TERM is a clean stop).
if [ "$sampler_status" -ne 0 ] && [ "$sampler_status" -ne 143 ]; then exit "$sampler_status"; fi
exit 0
