import os
import shutil
import subprocess

import pytest


def _bpf_unavailable_reason() -> str | None:
    """Why BPF tests cannot run here, or None when they can."""
    if os.geteuid() != 0:
        return "BPF tests need root"
    try:
        import bcc  # noqa: F401
    except ImportError:
        return "BCC's Python bindings are missing (apt-get install python3-bpfcc)"
    if not os.path.exists(f"/lib/modules/{os.uname().release}/build") and not os.path.exists(
        "/sys/kernel/kheaders.tar.xz"
    ):
        return "no kernel headers for the running kernel (make setup installs them)"
    if shutil.which("ip") is None:
        return "iproute2's ip command is missing"
    return None


def _skip_unless_possible(kind: str, reason: str | None) -> None:
    """Skip with the reason, except in CI (CI=true), where a test that cannot run fails."""
    if reason is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"{kind} test cannot run in CI: {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def requires_bpf() -> None:
    """For tests that need root, BCC and kernel headers."""
    _skip_unless_possible("BPF", _bpf_unavailable_reason())


@pytest.fixture(scope="session")
def requires_root() -> None:
    """For tests that make links of their own: root and iproute2 (no BPF)."""
    reason = None
    if os.geteuid() != 0:
        reason = "making links needs root"
    elif shutil.which("ip") is None:
        reason = "iproute2's ip command is missing"
    _skip_unless_possible("root", reason)


@pytest.fixture(scope="session")
def requires_systemd() -> None:
    """For tests of the units: systemd's tools (not systemd as PID 1)."""
    missing = [tool for tool in ("systemd-analyze", "systemctl") if shutil.which(tool) is None]
    _skip_unless_possible(
        "systemd", f"{', '.join(missing)} missing (apt-get install systemd)" if missing else None
    )


@pytest.fixture(scope="session")
def requires_postgres() -> None:
    """For tests of a central PostgreSQL (DATABASE_URL). CI runs the suite on PostgreSQL first
    and then on SQLite with CI_POSTGRES_PASSED=1: there they skip, having run."""
    if os.environ.get("DATABASE_URL"):
        return
    if os.environ.get("CI_POSTGRES_PASSED") == "1":
        pytest.skip("PostgreSQL only: ran in CI's PostgreSQL pass")
    _skip_unless_possible("PostgreSQL", "needs DATABASE_URL=postgres://... (a PostgreSQL server)")


def _central_unavailable_reason() -> str | None:
    """Why `make central`'s tests cannot run here, or None when they can."""
    if os.geteuid() != 0:
        return "setting up PostgreSQL roles and Redis needs root"
    tools = ("pg_lsclusters", "pg_createcluster", "redis-server")
    missing = [tool for tool in tools if shutil.which(tool) is None]
    if missing:
        return f"{', '.join(missing)} missing (apt-get install postgresql redis-server)"
    clusters = subprocess.run(["pg_lsclusters", "--no-header"], capture_output=True, text=True)
    if not any(line.split()[3].startswith("online") for line in clusters.stdout.splitlines()):
        return "no PostgreSQL cluster is running (pg_lsclusters; pg_ctlcluster VERSION main start)"
    return None


@pytest.fixture(scope="session")
def requires_central() -> None:
    """For tests of scripts/central.sh: root, PostgreSQL with a running cluster, Redis."""
    _skip_unless_possible("central", _central_unavailable_reason())


CHROMIUM = "/usr/bin/chromium"


def _browser_unavailable_reason() -> str | None:
    """Why browser tests cannot run here, or None when they can."""
    if not os.access(CHROMIUM, os.X_OK):
        return f"no Chromium at {CHROMIUM} (apt-get install chromium)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "Playwright for Python is missing (make setup installs it)"
    return None


@pytest.fixture(scope="session")
def requires_browser() -> None:
    """For tests that need Chromium and Playwright."""
    _skip_unless_possible("browser", _browser_unavailable_reason())


NGINX = "/usr/sbin/nginx"


@pytest.fixture(scope="session")
def requires_nginx() -> None:
    """For the reverse-proxy test: nginx and openssl (for its certificate)."""
    reason = None
    if not os.access(NGINX, os.X_OK):
        reason = f"no nginx at {NGINX} (apt-get install nginx)"
    elif shutil.which("openssl") is None:
        reason = "openssl is missing (apt-get install openssl)"
    _skip_unless_possible("nginx", reason)


@pytest.fixture
def api(client):
    """GET a path of the API: its JSON, once the status is the one expected."""

    def get(path: str, status: int = 200):
        response = client.get(path)
        assert response.status_code == status, response.content
        return response.json()

    return get


def pytest_configure(config: pytest.Config) -> None:
    """No notification worker in the test process (netmetrics/asgi.py, which test_consumer
    imports, would start one on the test database): the tests start their own."""
    from django.conf import settings

    settings.NETMETRICS_NOTIFY = False
