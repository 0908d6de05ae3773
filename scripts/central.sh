#!/usr/bin/env bash
# sudo make central [ALLOW=CIDR,...]: the centre of a fleet (README "A fleet: the centre").
# PostgreSQL and Redis on this host: the database and its owner role, which runs the migrations;
# a role for the samplers and one for the web; a password for Redis; then the lines to put on
# each host. Idempotent: the generated passwords are kept in a root-only file, and a second run
# changes nothing and prints the same lines.
#
# ALLOW=CIDR[,CIDR]  open PostgreSQL (the sampler and web roles only) and Redis to these networks;
#                    remembered. Empty: as the last run left it (loopback only at first).
#                    ALLOW=none: loopback only again.
# CENTRAL_ADDRESS    the address the hosts reach this one by (default: the address of the default
#                    route's interface when ALLOW is set, else 127.0.0.1)
# For tests and unusual set-ups: NETMETRICS_CENTRAL_DB, _OWNER, _SAMPLER, _WEB (names),
# NETMETRICS_CENTRAL_ENV (the secrets file), NETMETRICS_CENTRAL_CLUSTER (VERSION/NAME, default
# the first of pg_lsclusters), NETMETRICS_CENTRAL_REDIS=0 (leave Redis alone),
# NETMETRICS_CENTRAL_REDIS_CONF (another redis.conf; its port, pidfile and dir are its own).
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf 'central: %s\n' "$*"; }
die() { printf 'central: %s\n' "$*" >&2; exit 1; }

DB=${NETMETRICS_CENTRAL_DB:-netmetrics}
OWNER=${NETMETRICS_CENTRAL_OWNER:-netmetrics}
SAMPLER=${NETMETRICS_CENTRAL_SAMPLER:-netmetrics_sampler}
WEB=${NETMETRICS_CENTRAL_WEB:-netmetrics_web}
SECRETS=${NETMETRICS_CENTRAL_ENV:-/etc/netmetrics/central.env}
CLUSTER=${NETMETRICS_CENTRAL_CLUSTER:-}
REDIS=${NETMETRICS_CENTRAL_REDIS:-1}
REDIS_CONF=${NETMETRICS_CENTRAL_REDIS_CONF:-/etc/redis/redis.conf}
PYTHON=.venv/bin/python
# The tables of Django's own that every role reads: `manage.py migrate`, which `make install`
# runs on each host, reads them to find that there is nothing to do.
SHARED_TABLES="'django_migrations', 'django_content_type', 'auth_permission'"

[ "$(id -u)" -eq 0 ] || die "setting up PostgreSQL and Redis needs root: run 'sudo make central'"
[ -x "$PYTHON" ] || die "no $PYTHON here: run 'sudo make central' (it runs 'make setup' first)"
for name in "$DB" "$OWNER" "$SAMPLER" "$WEB"; do
    [[ $name =~ ^[a-z_][a-z0-9_]{0,62}$ ]] ||
        die "'$name': database and role names are lower-case letters, digits and _"
done
[ "$(printf '%s\n' "$OWNER" "$SAMPLER" "$WEB" | sort -u | wc -l)" -eq 3 ] ||
    die "the owner, sampler and web roles need three different names"
case $REDIS in 0 | 1) ;; *) die "NETMETRICS_CENTRAL_REDIS=$REDIS: use 1 or 0" ;; esac
systemd_runs() { [ -d /run/systemd/system ]; }

# --- packages ----------------------------------------------------------------------------------
missing=()
compgen -G '/usr/lib/postgresql/*/bin/postgres' >/dev/null && command -v pg_lsclusters >/dev/null ||
    missing+=(postgresql)
[ "$REDIS" = 0 ] || command -v redis-server >/dev/null || missing+=(redis-server)
if [ ${#missing[@]} -gt 0 ]; then
    command -v apt-get >/dev/null || die "${missing[*]} missing, and no apt-get to install them"
    say "installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# --- the secrets file --------------------------------------------------------------------------
declare -A kept=()
if [ -e "$SECRETS" ]; then
    while IFS='=' read -r key value; do
        case $key in '' | '#'*) continue ;; esac
        kept[$key]=$value
    done <"$SECRETS"
fi
token() { "$PYTHON" -c "import secrets; print(secrets.$1)"; }
for key in OWNER_PASSWORD SAMPLER_PASSWORD WEB_PASSWORD REDIS_PASSWORD; do
    [ -n "${kept[$key]:-}" ] || kept[$key]=$(token 'token_hex(24)')
done
[ -n "${kept[SECRET_KEY]:-}" ] || kept[SECRET_KEY]=$(token 'token_urlsafe(50)')

# ALLOW: networks as ip_network normalizes them (10.0.0.7/24 is 10.0.0.0/24; an address is /32).
networks() {
    "$PYTHON" - "$1" <<'PY'
import ipaddress, sys
try:
    nets = [ipaddress.ip_network(n.strip(), strict=False) for n in sys.argv[1].split(",") if n.strip()]
except ValueError as exc:
    sys.exit(f"central: ALLOW: {exc}")
print(",".join(dict.fromkeys(str(n) for n in nets)))
PY
}
network_managed=1  # whether this run sets PostgreSQL's listening and pg_hba.conf at all
case ${ALLOW:-} in
    '') kept[ALLOW]=${kept[ALLOW]:-}; [ -n "${kept[ALLOW]}" ] || network_managed=0 ;;
    none) kept[ALLOW]= ;;
    *) kept[ALLOW]=$(networks "$ALLOW") ;;
esac
allow=${kept[ALLOW]}

secrets_text() {
    echo "# netmetrics' centre, written by 'sudo make central': what it generated, kept so that the"
    echo "# next run sets and prints the same. Root's only. Without this file the next run makes new"
    echo "# passwords (and every host then needs the new lines)."
    for key in OWNER_PASSWORD SAMPLER_PASSWORD WEB_PASSWORD REDIS_PASSWORD SECRET_KEY ALLOW; do
        printf '%s=%s\n' "$key" "${kept[$key]}"
    done
}
if ! cmp -s <(secrets_text) "$SECRETS" 2>/dev/null; then
    if [ -e "$SECRETS" ]; then say "updating $SECRETS"; else say "writing $SECRETS (root's only: the passwords)"; fi
    install -d -m 0755 "$(dirname "$SECRETS")"
    tmp=$(mktemp "$SECRETS.XXXXXX")
    secrets_text >"$tmp"
    chmod 0600 "$tmp"
    mv -f "$tmp" "$SECRETS"
fi
[ "$(stat -c '%a %u' "$SECRETS")" = "600 0" ] || { chown root: "$SECRETS"; chmod 0600 "$SECRETS"; }

# --- PostgreSQL: the cluster -------------------------------------------------------------------
if [ -n "$CLUSTER" ]; then
    line=$(pg_lsclusters --no-header | awk -v c="$CLUSTER" '$1 "/" $2 == c')
    [ -n "$line" ] || die "no PostgreSQL cluster $CLUSTER (pg_lsclusters lists the clusters)"
else
    line=$(pg_lsclusters --no-header | head -n 1)
    [ -n "$line" ] || die "no PostgreSQL cluster: make one with 'pg_createcluster --start VERSION main'"
fi
read -r pg_version pg_name pg_port pg_status _ <<<"$line"
cluster=$pg_version/$pg_name
if [ "$pg_status" = down ]; then
    # pg_ctlcluster hands start, stop and restart to systemctl where systemd runs (PID 1), and
    # runs pg_ctl itself where it does not (containers, CI).
    say "starting PostgreSQL $cluster"
    pg_ctlcluster "$pg_version" "$pg_name" start
fi

# psql as postgres (peer authentication on the Unix socket); from / as postgres may not enter
# the checkout. q: one query's rows, fields separated by |.
psql_as_postgres() {
    (cd / && runuser -u postgres -- psql --cluster "$cluster" -X -q -v ON_ERROR_STOP=1 "$@")
}
q() { psql_as_postgres -At -d "${2:-postgres}" -c "$1"; }

# --- PostgreSQL: roles and the database --------------------------------------------------------
# role NAME PASSWORD_KEY: a LOGIN role whose password is the kept one. The sampler's and web's
# roles have no other attribute; the owner's others are left as they are (CI's may CREATEDB).
role() {
    local name=$1 password=${kept[$2]} row login super others verifier current
    row=$(q "SELECT rolcanlogin, rolsuper, rolcreatedb OR rolcreaterole OR rolreplication OR rolbypassrls,
                    coalesce(rolpassword, '') FROM pg_authid WHERE rolname = '$name'")
    if [ -z "$row" ]; then
        say "creating role $name"
        q "CREATE ROLE $name LOGIN"
        row="t|f|f|"
    fi
    IFS='|' read -r login super others current <<<"$row"
    if [ "$name" != "$OWNER" ] && { [ "$super" = t ] || [ "$others" = t ]; }; then
        say "role $name: removing its attributes (superuser, createdb, createrole, replication, bypassrls)"
        q "ALTER ROLE $name NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS"
    elif [ "$super" = t ]; then
        die "role $name is a superuser: the database's owner must not be (NETMETRICS_CENTRAL_OWNER names another)"
    fi
    [ "$login" = t ] || q "ALTER ROLE $name LOGIN"
    # The verifier is made here: the password never reaches the server, and a matching one stays.
    verifier=$(printf '%s\n%s\n' "$password" "$current" | "$PYTHON" -m netmetrics.scram)
    if [ "$verifier" != "$current" ]; then
        say "setting the password of role $name"
        psql_as_postgres -d postgres <<<"ALTER ROLE $name PASSWORD '$verifier'"
    fi
}
role "$OWNER" OWNER_PASSWORD
role "$SAMPLER" SAMPLER_PASSWORD
role "$WEB" WEB_PASSWORD

db_owner=$(q "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = '$DB'")
if [ -z "$db_owner" ]; then
    say "creating database $DB, owned by $OWNER"
    q "CREATE DATABASE $DB OWNER $OWNER"
elif [ "$db_owner" != "$OWNER" ]; then
    die "database $DB exists and belongs to $db_owner, not $OWNER: name another with NETMETRICS_CENTRAL_DB, or its owner with NETMETRICS_CENTRAL_OWNER"
fi

# --- the migrations, as the owner (the tables are its own) -------------------------------------
log=$(mktemp)
trap 'rm -f "$log"' EXIT
if ! DATABASE_URL="postgres://$OWNER:${kept[OWNER_PASSWORD]}@127.0.0.1:$pg_port/$DB" \
    NETMETRICS_SECRET_KEY=${kept[SECRET_KEY]} "$PYTHON" manage.py migrate --no-input >"$log" 2>&1; then
    die "migrating $DB as $OWNER on 127.0.0.1:$pg_port failed (PostgreSQL must accept passwords from 127.0.0.1, as Debian's pg_hba.conf does): $(grep -v '^\s*$' "$log" | tail -n 1)"
fi
grep -q '^  Applying' "$log" && say "migrated $DB: $(grep -c '^  Applying' "$log") migrations applied"

# --- privileges, all at once (one transaction) and again on every run --------------------------
# sampler: reads and writes the metrics tables (samples, rollups, flows, runs; retention deletes);
#          reads Django's SHARED_TABLES; nothing of users, sessions and the admin's log.
# web:     reads the metrics tables (the admin's views of them are read-only) and Django's
#          SHARED_TABLES; reads and writes the rest of Django's (users, sessions, the admin's log).
# Neither may create anything (PostgreSQL 15 gives PUBLIC no CREATE on schema public; earlier
# versions did). Tables that later migrations make get the metrics tables' grants by default;
# the next run (which migrates first) sets every table's as above.
psql_as_postgres -d "$DB" -v db="$DB" -v owner="$OWNER" -v sampler="$SAMPLER" -v web="$WEB" <<SQL
BEGIN;
REVOKE ALL ON DATABASE :"db" FROM PUBLIC;
GRANT CONNECT ON DATABASE :"db" TO :"sampler", :"web";
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO :"sampler", :"web";
REVOKE ALL ON ALL TABLES IN SCHEMA public FROM :"sampler", :"web";
REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM :"sampler", :"web";
SELECT format('GRANT %s ON %s TO %I', privileges, string_agg(format('%I', tablename), ', '), role)
  FROM pg_tables,
       (VALUES (:'sampler', 'metrics', 'SELECT, INSERT, UPDATE, DELETE'),
               (:'sampler', 'shared', 'SELECT'),
               (:'web', 'metrics', 'SELECT'),
               (:'web', 'shared', 'SELECT'),
               (:'web', 'django', 'SELECT, INSERT, UPDATE, DELETE')) AS grants (role, kind, privileges)
 WHERE schemaname = 'public'
   AND kind = CASE WHEN tablename LIKE 'metrics\_%' THEN 'metrics'
                   WHEN tablename IN ($SHARED_TABLES) THEN 'shared'
                   ELSE 'django' END
 GROUP BY role, privileges \gexec
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO :"sampler", :"web";
ALTER DEFAULT PRIVILEGES FOR ROLE :"owner" IN SCHEMA public
    GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO :"sampler";
ALTER DEFAULT PRIVILEGES FOR ROLE :"owner" IN SCHEMA public GRANT SELECT ON TABLES TO :"web";
ALTER DEFAULT PRIVILEGES FOR ROLE :"owner" IN SCHEMA public
    GRANT USAGE, SELECT ON SEQUENCES TO :"sampler", :"web";
COMMIT;
SQL

# --- PostgreSQL: other hosts (ALLOW) -----------------------------------------------------------
# listen_addresses='*' in a conf.d file of this database's (removed again by ALLOW=none), and
# pg_hba.conf lines between markers, first in the file, for the sampler and web roles from the
# ALLOW networks. The owner connects from this host only. Without ALLOW, now or remembered,
# neither file is touched.
if [ "$network_managed" = 1 ]; then
    config_file=$(q "SHOW config_file")
    hba=$(q "SHOW hba_file")
    conf_d=$(dirname "$config_file")/conf.d
    grep -Eq "^[[:space:]]*include_dir[[:space:]]*=[[:space:]]*'?conf\.d'?" "$config_file" ||
        die "$config_file has no \"include_dir = 'conf.d'\" (Debian's has): add it, or set listen_addresses = '*' yourself"
    listen=$conf_d/netmetrics-central-$DB.conf
    begin="# netmetrics central $DB: begin (sudo make central ALLOW=...; ALLOW=none removes these lines)"
    end="# netmetrics central $DB: end"
    restart=0 reload=0
    if [ -n "$allow" ]; then
        want=$(printf '# netmetrics central %s (sudo make central ALLOW=...; ALLOW=none removes this file)\nlisten_addresses = '\''*'\''' "$DB")
        if [ "$(cat "$listen" 2>/dev/null)" != "$want" ]; then
            say "PostgreSQL: listening on every address ($listen)"
            install -d "$conf_d"
            printf '%s\n' "$want" >"$listen"
            restart=1
        fi
    elif [ -e "$listen" ]; then
        say "PostgreSQL: loopback only again (removing $listen)"
        rm -f "$listen"
        restart=1
    fi
    block=$(
        if [ -n "$allow" ]; then
            echo "$begin"
            for net in ${allow//,/ }; do
                printf 'host    %s    %s,%s    %s    scram-sha-256\n' "$DB" "$SAMPLER" "$WEB" "$net"
            done
            echo "$end"
        fi
    )
    new_hba=$(BEGIN_LINE=$begin END_LINE=$end BLOCK=$block awk '
        BEGIN { begin = ENVIRON["BEGIN_LINE"]; end = ENVIRON["END_LINE"]; block = ENVIRON["BLOCK"] }
        $0 == begin { skip = 1; next }
        skip { if ($0 == end) skip = 0; next }
        !done && block != "" && $0 !~ /^[[:space:]]*(#|$)/ { print block; done = 1 }
        { print }
        END { if (!done && block != "") print block }' "$hba")
    if [ "$new_hba" != "$(cat "$hba")" ]; then
        cp -p "$hba" "$hba.netmetrics-central.bak"
        printf '%s\n' "$new_hba" >"$hba"  # in place: the file keeps its owner and mode
        errors=$(q "SELECT count(*) FROM pg_hba_file_rules WHERE error IS NOT NULL")
        if [ "$errors" != 0 ]; then
            cp -p "$hba.netmetrics-central.bak" "$hba"
            die "$hba: the new lines do not parse (restored; see pg_hba_file_rules)"
        fi
        rm -f "$hba.netmetrics-central.bak"
        if [ -n "$allow" ]; then say "pg_hba.conf: $SAMPLER and $WEB from $allow"; else say "pg_hba.conf: removed the lines of $DB"; fi
        reload=1
    fi
    # listen_addresses takes a restart; pg_hba.conf a reload.
    if [ "$restart" = 1 ] || { [ -n "$allow" ] && [ "$(q "SHOW listen_addresses")" != '*' ]; }; then
        say "restarting PostgreSQL $cluster (listen_addresses)"
        pg_ctlcluster "$pg_version" "$pg_name" restart
    elif [ "$reload" = 1 ]; then
        pg_ctlcluster "$pg_version" "$pg_name" reload
    fi
    listening=$(q "SHOW listen_addresses")
    if [ -n "$allow" ] && [ "$listening" != '*' ]; then
        die "PostgreSQL listens on '$listening' only: ALTER SYSTEM (postgresql.auto.conf) overrides $listen; 'ALTER SYSTEM RESET listen_addresses' lets it apply"
    fi
fi

# --- Redis -------------------------------------------------------------------------------------
# Debian's redis-server, with a file of ours included last by its redis.conf: a password (always)
# and the addresses (loopback, or all with ALLOW: Redis cannot tell networks apart, its password
# is what guards it). Restarted only when that changes.
redis_port=
if [ "$REDIS" = 1 ]; then
    [ -f "$REDIS_CONF" ] || die "no $REDIS_CONF (NETMETRICS_CENTRAL_REDIS_CONF names another; NETMETRICS_CENTRAL_REDIS=0 leaves Redis alone)"
    redis_ours=$(dirname "$REDIS_CONF")/netmetrics-central.conf
    redis_want=$(
        echo "# netmetrics central (sudo make central): written on each run from $SECRETS"
        echo "requirepass ${kept[REDIS_PASSWORD]}"
        if [ -n "$allow" ]; then echo "bind * -::*"; else echo "bind 127.0.0.1 -::1"; fi
        echo "protected-mode yes"
    )
    redis_changed=0
    if ! grep -qxF "include $redis_ours" "$REDIS_CONF"; then
        printf '\n# netmetrics central (sudo make central): its password and addresses, last\ninclude %s\n' "$redis_ours" >>"$REDIS_CONF"
        redis_changed=1
    fi
    if [ "$(cat "$redis_ours" 2>/dev/null)" != "$redis_want" ]; then
        printf '%s\n' "$redis_want" >"$redis_ours"
        redis_changed=1
    fi
    chown root:redis "$redis_ours" && chmod 0640 "$redis_ours"
    setting() { awk -v k="$1" '$1 == k { v = $2 } END { print v }' "$REDIS_CONF" "$redis_ours"; }
    redis_port=$(setting port)
    redis_port=${redis_port:-6379}
    redis_pidfile=$(setting pidfile)
    # Debian's redis-server is a link to redis-check-rdb, and a redis-server by its name only:
    # started by that name, matched (start-stop-daemon's --exec) by the file it is.
    redis_name=$(command -v redis-server)
    redis_bin=$(readlink -f "$redis_name")
    redis_ping() { REDISCLI_AUTH=${kept[REDIS_PASSWORD]} redis-cli --no-auth-warning -h 127.0.0.1 -p "$redis_port" ping 2>&1 || true; }
    # Debian's unit where systemd runs and this is its redis.conf; else as Debian's init script
    # does it, for the redis-server of this configuration's pidfile only (not another one).
    redis_start() {
        if systemd_runs && [ "$REDIS_CONF" = /etc/redis/redis.conf ]; then
            systemctl "$1" redis-server
            return
        fi
        [ -n "$redis_pidfile" ] || die "$REDIS_CONF names no pidfile: cannot tell its redis-server from another"
        if [ "$1" = restart ]; then
            start-stop-daemon --stop --quiet --oknodo --retry TERM/10/KILL/5 --pidfile "$redis_pidfile" --exec "$redis_bin"
        fi
        [ -d "$(dirname "$redis_pidfile")" ] || install -d -o redis -g redis "$(dirname "$redis_pidfile")"
        start-stop-daemon --start --quiet --oknodo --umask 007 --pidfile "$redis_pidfile" --chuid redis:redis \
            --startas "$redis_name" --exec "$redis_bin" -- "$REDIS_CONF" --daemonize yes
    }
    if [ "$redis_changed" = 1 ]; then
        say "Redis: a password; listening on $(if [ -n "$allow" ]; then echo 'every address'; else echo loopback; fi); restarting it"
        redis_start restart
    elif [ "$(redis_ping)" != PONG ]; then
        say "starting Redis"
        redis_start start
    fi
    for _ in $(seq 100); do  # 10 s for it to load its data
        answer=$(redis_ping)
        case $answer in *"Could not connect"* | *LOADING*) sleep 0.1 ;; *) break ;; esac
    done
    case $answer in
        PONG) ;;
        *"Could not connect"*) die "Redis does not answer on 127.0.0.1:$redis_port (see its log, 'logfile' in $REDIS_CONF)" ;;
        *) die "127.0.0.1:$redis_port answers, but not to this password ($(head -n 1 <<<"$answer")): another redis-server holds the port; stop it, or NETMETRICS_CENTRAL_REDIS=0 leaves Redis alone" ;;
    esac
fi

# --- what to put on each host ------------------------------------------------------------------
address=${CENTRAL_ADDRESS:-}
if [ -z "$address" ] && [ -n "$allow" ]; then
    iface=$(ip -4 route show default 2>/dev/null | awk '{ for (i = 1; i < NF; i++) if ($i == "dev") { print $(i + 1); exit } }')
    [ -z "$iface" ] || address=$(ip -4 -o addr show dev "$iface" scope global | awk '{ sub("/.*", "", $4); print $4; exit }')
    [ -n "$address" ] || address=$(hostname -I 2>/dev/null | awk '{ print $1 }')
    [ -n "$address" ] || die "cannot tell this host's address: set CENTRAL_ADDRESS"
fi
address=${address:-127.0.0.1}
host=$address
[[ $host != *:* ]] || host="[$host]"

say "PostgreSQL $cluster, port $pg_port: database $DB (owner $OWNER), roles $SAMPLER and $WEB"
[ "$REDIS" = 0 ] || say "Redis, port $redis_port, with a password"
if [ -n "$allow" ]; then
    say "other hosts may connect from $allow (ALLOW=none: loopback only)"
else
    say "loopback only: the lines below work on this host; 'sudo make central ALLOW=CIDR' opens PostgreSQL and Redis to other hosts"
fi
say "the passwords are kept in $SECRETS; the next run prints the same lines"
cat <<EOF

# Each sampler host: /etc/netmetrics/netmetrics.env, then 'sudo make install'
DATABASE_URL=postgres://$SAMPLER:${kept[SAMPLER_PASSWORD]}@$host:$pg_port/$DB
#NETMETRICS_HOST_NAME=the name the dashboard shows for it (default: its hostname)

# Each web host: /etc/netmetrics/web.env (mode 600; read by netmetrics-web only, after netmetrics.env), then 'sudo systemctl restart netmetrics-web'
DATABASE_URL=postgres://$WEB:${kept[WEB_PASSWORD]}@$host:$pg_port/$DB
EOF
if [ "$REDIS" = 1 ]; then
    echo "REDIS_URL=redis://:${kept[REDIS_PASSWORD]}@$host:$redis_port/0"
else
    echo "#REDIS_URL=  (NETMETRICS_CENTRAL_REDIS=0: none set up here)"
fi
cat <<EOF
NETMETRICS_SECRET_KEY=${kept[SECRET_KEY]}
#NETMETRICS_BIND=0.0.0.0
#NETMETRICS_ALLOWED_HOSTS=the names browsers use for this web host, comma-separated
EOF
