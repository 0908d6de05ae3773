"""Settings for netmetrics, read from the environment with defaults that work out of the box.

NETMETRICS_DB             SQLite file (default var/netmetrics.sqlite3 in the checkout)
NETMETRICS_SECRET_KEY     else one is generated once and kept beside the database
NETMETRICS_DEBUG          1/true/yes to turn Django's debug mode on (default off)
NETMETRICS_ALLOWED_HOSTS  comma-separated host names (default: loopback names)
NETMETRICS_HTTP_PORTS, NETMETRICS_HTTPS_PORTS, NETMETRICS_DNS_PORTS
                          comma-separated ports of the application classes (80, 443, 53)
NETMETRICS_RETENTION_SAMPLES, NETMETRICS_RETENTION_MINUTES, NETMETRICS_RETENTION_HOURS,
NETMETRICS_RETENTION_FLOWS
                          how long per-second samples, minute and hour rollups, and the top
                          flows of each minute are kept (48h, 30d, 730d, 7d); a number and
                          s, m, h or d
NETMETRICS_FLOW_TOP       flows kept per minute by bytes, and again by packets (20)
DATABASE_URL              postgres://USER:PASSWORD@HOST:PORT/NAME: PostgreSQL instead of the
                          SQLite file (NETMETRICS_DB is then not used)
REDIS_URL                 redis://HOST:PORT/DB: the channel layer is channels_redis's instead of
                          the in-memory one
NETMETRICS_HOST_ID        this host's id in a fleet (a UUID); else derived from /etc/machine-id,
                          else generated once and kept beside the database
NETMETRICS_HOST_NAME      this host's display name (default: its hostname, as it is now)
NETMETRICS_SPOOL, NETMETRICS_SPOOL_TICKS
                          with DATABASE_URL: the sampler's spool file while the database does
                          not answer (default spool.sqlite3 beside NETMETRICS_DB) and the ticks
                          it keeps at full resolution (21600: 6 hours at 1 Hz)
NETMETRICS_BIND           the address the web server listens on (127.0.0.1)
NETMETRICS_AUTH           required (a login or a token for everything but /health) or
                          loopback-open (clients on loopback need none); default loopback-open
                          when NETMETRICS_BIND is a loopback address, else required
NETMETRICS_TRUSTED_PROXY  1 behind a reverse proxy: its X-Forwarded-Proto says HTTPS, and its
                          X-Forwarded-For the client (the web server runs with --proxy-headers)
NETMETRICS_LOGIN_FAILURES, NETMETRICS_LOGIN_COOLOFF
                          failed logins from one address, or for one username, before it is
                          locked out (5), and for how long after its last failure (15m)
NETMETRICS_TIME_ZONE      the zone of usage's days, months and billing cycles (an IANA name;
                          default the server's own, from /etc/localtime)
NETMETRICS_NOTIFY         0 in a web process that must not deliver alert notifications nor
                          evaluate the stale rule (default 1: every web process does, and
                          several on one database deliver each notification once)
NETMETRICS_NOTIFY_TIMEOUT seconds a webhook or the mail server may take to answer (5)
NETMETRICS_EMAIL_HOST     the SMTP server of e-mail notifications; without it they fail
NETMETRICS_EMAIL_PORT     its port (25; 587 is usual with starttls, 465 with tls)
NETMETRICS_EMAIL_SECURITY none, starttls or tls (implicit TLS) (default none)
NETMETRICS_EMAIL_USER, NETMETRICS_EMAIL_PASSWORD
                          the login on it, if it wants one
NETMETRICS_EMAIL_FROM     the sender (default netmetrics@ this host's name)
"""

import os
import socket
from pathlib import Path

from access.rules import MODES, default_mode
from bpf.classes import DEFAULT_APP_PORTS
from metrics.tiers import RETAINED
from netmetrics.envconfig import (
    env_bool,
    env_choice,
    env_database,
    env_duration,
    env_int,
    env_list,
    env_ports,
    env_redis,
    env_time_zone,
    host_id,
    secret_key,
)

BASE_DIR = Path(__file__).resolve().parent.parent

DATABASE_PATH = Path(os.environ.get("NETMETRICS_DB") or BASE_DIR / "var" / "netmetrics.sqlite3")
SECRET_KEY = os.environ.get("NETMETRICS_SECRET_KEY") or secret_key(DATABASE_PATH.parent)
DEBUG = env_bool("NETMETRICS_DEBUG", default=False)
# Who this host is in a fleet: what its sampler's runs are tagged with (metrics.models.Host).
NETMETRICS_HOST_ID = host_id("NETMETRICS_HOST_ID", DATABASE_PATH.parent)
NETMETRICS_HOST_NAME = os.environ.get("NETMETRICS_HOST_NAME", "").strip() or socket.gethostname()
ALLOWED_HOSTS = env_list("NETMETRICS_ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]"])

# Who may see traffic (access/rules.py): everyone logs in, unless the server listens on loopback
# only, where `make run`'s user on the same host needs no login.
NETMETRICS_BIND = os.environ.get("NETMETRICS_BIND", "").strip() or "127.0.0.1"
NETMETRICS_AUTH = env_choice("NETMETRICS_AUTH", MODES, default=default_mode(NETMETRICS_BIND))
NETMETRICS_TRUSTED_PROXY = env_bool("NETMETRICS_TRUSTED_PROXY", default=False)
if NETMETRICS_TRUSTED_PROXY:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "dashboard"
LOGOUT_REDIRECT_URL = "login"

# Failed logins, per client address and per username each on its own (access/lockout.py): the
# login pages and basic auth on the API all go through authenticate(), which axes' backend
# guards. A login clears that address's and that username's failures. The address is
# REMOTE_ADDR, never a header (daphne has put a trusted proxy's X-Forwarded-For there).
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env_int("NETMETRICS_LOGIN_FAILURES", default=5, low=1, high=1000)
AXES_COOLOFF_TIME = env_duration("NETMETRICS_LOGIN_COOLOFF", default="15m")
AXES_LOCKOUT_PARAMETERS = ["ip_address", "username"]
AXES_RESET_ON_SUCCESS = True
AXES_CLIENT_IP_CALLABLE = "access.lockout.client_address"
AXES_LOCKOUT_CALLABLE = "access.lockout.locked_out"

# Ports that make a TCP/UDP packet count as http, https or dns (see bpf.classes.APP_PROTOCOLS).
NETMETRICS_APP_PORTS = {
    name: env_ports(f"NETMETRICS_{name.upper()}_PORTS", default=ports)
    for name, ports in DEFAULT_APP_PORTS.items()
}

# Retention per table (metrics.tiers): the sampler prunes older rows in small batches as it goes.
NETMETRICS_RETENTION = {
    table.retention: env_duration(table.setting, default=table.default_retention)
    for table in RETAINED
}

# With DATABASE_URL: where the sampler keeps the ticks the central database did not take, and
# how many at full resolution (older ones are folded together; see metrics/spool.py).
NETMETRICS_SPOOL = Path(
    os.environ.get("NETMETRICS_SPOOL") or DATABASE_PATH.parent / "spool.sqlite3"
)
NETMETRICS_SPOOL_TICKS = env_int("NETMETRICS_SPOOL_TICKS", default=21_600, low=10, high=10**8)

# Usage's days, months and cycles are this zone's; Django's own TIME_ZONE stays UTC (the API's
# timestamps and the admin's are UTC, as they have always been).
NETMETRICS_TIME_ZONE = env_time_zone("NETMETRICS_TIME_ZONE")
# The top flows of each minute the sampler stores: this many by bytes, and by packets.
NETMETRICS_FLOW_TOP = env_int("NETMETRICS_FLOW_TOP", default=20, low=1, high=1000)

# Alert notifications (alerts/worker.py): delivered by a thread of each web process unless off.
NETMETRICS_NOTIFY = env_bool("NETMETRICS_NOTIFY", default=True)
NETMETRICS_NOTIFY_TIMEOUT = env_int("NETMETRICS_NOTIFY_TIMEOUT", default=5, low=1, high=300)
# E-mail through Django's SMTP backend; no host means no mail server (alerts/delivery.py says
# so in each e-mail notification's error, rather than trying Django's default, localhost).
EMAIL_HOST = os.environ.get("NETMETRICS_EMAIL_HOST", "").strip()
EMAIL_PORT = env_int("NETMETRICS_EMAIL_PORT", default=25, low=1, high=65535)
_EMAIL_SECURITY = env_choice(
    "NETMETRICS_EMAIL_SECURITY", ("none", "starttls", "tls"), default="none"
)
EMAIL_USE_TLS = _EMAIL_SECURITY == "starttls"
EMAIL_USE_SSL = _EMAIL_SECURITY == "tls"
EMAIL_HOST_USER = os.environ.get("NETMETRICS_EMAIL_USER", "")
EMAIL_HOST_PASSWORD = os.environ.get("NETMETRICS_EMAIL_PASSWORD", "")
EMAIL_TIMEOUT = NETMETRICS_NOTIFY_TIMEOUT
DEFAULT_FROM_EMAIL = (
    os.environ.get("NETMETRICS_EMAIL_FROM", "").strip() or f"netmetrics@{socket.gethostname()}"
)

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI's assets, served locally
    "channels",
    "axes",
    "access",
    "metrics",
    "usage",
    "alerts",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "access.middleware.SecureCookiesOverHttps",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "access.middleware.LoginRequired",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "axes.middleware.AxesMiddleware",  # last: it turns a locked-out login into its page
]

ROOT_URLCONF = "netmetrics.urls"
ASGI_APPLICATION = "netmetrics.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# SQLite unless DATABASE_URL names a PostgreSQL database. SQLite: WAL lets the web server read
# while the sampler writes; the busy timeout makes a writer wait for a lock instead of failing at
# once (the sampler retries a failed write on its next tick); IMMEDIATE takes the write lock at
# BEGIN, so that a transaction never fails halfway on an upgrade from read to write.
# PostgreSQL (psycopg 3): Django's defaults (a connection per request; the sampler keeps one).
DATABASES = {
    "default": env_database("DATABASE_URL")
    or {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": DATABASE_PATH,
        "OPTIONS": {
            "timeout": 5,
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        },
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# One web process by default: the in-memory layer needs no extra server. Samples written by the
# sampler process reach it through metrics.relay, which learns of them from the database
# (PostgreSQL: LISTEN for the sampler's NOTIFY; SQLite: a poll). REDIS_URL selects
# channels_redis's Pub/Sub layer: live samples are at-most-once and superseded within a second,
# so its fire-and-forget delivery fits, and its groups live in the subscribing process (no
# group expiry to drop a dashboard left open for days, none left behind by a crashed process).
REDIS_URL = env_redis("REDIS_URL")
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
        "CONFIG": {"hosts": [REDIS_URL], "prefix": "netmetrics"},
    }
    if REDIS_URL
    else {"BACKEND": "channels.layers.InMemoryChannelLayer"}
}

REST_FRAMEWORK = {
    "DEFAULT_RENDERER_CLASSES": ["metrics.api.renderers.FastJSONRenderer"]
    + (["rest_framework.renderers.BrowsableAPIRenderer"] if DEBUG else []),
    # The token first: its WWW-Authenticate makes a request without credentials a 401.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "access.drf.BearerTokenAuthentication",
        "access.drf.PasswordAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["access.drf.CanViewTraffic"],
    "EXCEPTION_HANDLER": "metrics.api.errors.exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
}

SPECTACULAR_SETTINGS = {
    "TITLE": "netmetrics API",
    "DESCRIPTION": "Per-second traffic of Linux interfaces, counted in the kernel with eBPF.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    # The schema and its docs page are for viewers, as the API is (REST_FRAMEWORK's default).
    "SERVE_PERMISSIONS": ["access.drf.CanViewTraffic"],
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
# Serve straight from the app and static/ folders: no collectstatic step to forget.
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = DEBUG

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "loggers": {
        "netmetrics": {"handlers": ["console"], "level": "INFO", "propagate": False},
    },
}
