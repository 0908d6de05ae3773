import os
import shutil

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


@pytest.fixture(scope="session")
def requires_bpf() -> None:
    """Skip a test that needs root, BCC and headers; in CI (CI=true) such a skip is a failure."""
    reason = _bpf_unavailable_reason()
    if reason is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"BPF test cannot run in CI: {reason}", pytrace=False)
    pytest.skip(reason)


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
    """Skip a test that needs Chromium and Playwright; in CI (CI=true) such a skip is a failure."""
    reason = _browser_unavailable_reason()
    if reason is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"browser test cannot run in CI: {reason}", pytrace=False)
    pytest.skip(reason)
