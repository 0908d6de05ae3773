"""The systemd units: they verify, and their real command lines work as the units run them.

systemd is not PID 1 here or in CI, so each unit's ExecStart runs under setpriv: an unprivileged
user with exactly the unit's capabilities (the web: none), /run/netmetrics as the unit's
RuntimeDirectory would make it (a private bind mount, writable by that user only). The
sampler counts a test veth's traffic exactly that way, and without any one of its capabilities
stops with one line naming it. `make install` and `make uninstall` run for real in CI only:
they write /opt/netmetrics, /etc/netmetrics, /var/lib/netmetrics and a system user.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from bpf import capabilities, tcp_health
from bpf.pins import kept_directory, mount_bpffs
from tests.netns import UDP_FRAME, VethPair, sh, veth_pair
from tests.processes import ROOT, db_rows, migrated_env, wait_for

UNITS = {name: ROOT / "deploy" / f"netmetrics-{name}.service" for name in ("sampler", "web")}
PREFIX = "/opt/netmetrics"  # where the units expect the code; a test puts the checkout there
NOBODY = 65534  # Debian's nobody:nogroup


def unit(name: str) -> dict[str, list[str]]:
    """A unit's settings by key (a key may be given more than once)."""
    settings: dict[str, list[str]] = {}
    for line in UNITS[name].read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, value = line.split("=", 1)
            settings.setdefault(key, []).append(value)
    return settings


def command(name: str, **variables: list[str]) -> list[str]:
    """The unit's ExecStart from the checkout, its $VARIABLES replaced by words."""
    words = unit(name)["ExecStart"][0].replace(PREFIX, str(ROOT)).split()
    return [part for word in words for part in variables.get(word.lstrip("$"), [word])]


def unit_caps(name: str) -> list[str]:
    ambient = unit(name)["AmbientCapabilities"][0].split()
    assert ambient == unit(name)["CapabilityBoundingSet"][0].split()
    return ambient


# In a mount namespace of its own, as the sampler unit sets it up: `rundir` ($0) as its
# RuntimeDirectory /run/netmetrics; bpffs read-only (ProtectKernelTunables makes all of /sys
# so) but for /sys/fs/bpf/netmetrics (ReadWritePaths), where its pins go.
SANDBOX = """
mount --bind "$0" /run/netmetrics || exit 1
if mountpoint -q /sys/fs/bpf && [ -d /sys/fs/bpf/netmetrics ]; then
    mount -o remount,bind,ro /sys/fs/bpf || exit 1
    mount --bind /sys/fs/bpf/netmetrics /sys/fs/bpf/netmetrics || exit 1
    mount -o remount,bind,rw /sys/fs/bpf/netmetrics || exit 1
fi
exec "$@"
"""


def as_unit_user(caps: list[str], rundir: Path, *argv: str) -> list[str]:
    """argv as an unprivileged user with exactly `caps` (inheritable, ambient, bounding), in
    the SANDBOX."""
    names = ",".join(["-all", *(f"+{cap.removeprefix('CAP_').lower()}" for cap in caps)])
    return [
        "unshare", "--mount", "--propagation", "private",
        "sh", "-c", SANDBOX, str(rundir),
        "setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
        f"--inh-caps={names}", f"--ambient-caps={names}", f"--bounding-set={names}",
        *argv,
    ]  # fmt: skip


@pytest.fixture
def scratch() -> Iterator[Path]:
    """A directory the unprivileged user owns (pytest's tmp_path is root's only)."""
    path = Path(tempfile.mkdtemp(prefix="netmetrics-service-"))
    (path / "run").mkdir()
    os.makedirs("/run/netmetrics", exist_ok=True)  # the bind mount's mount point
    try:
        yield path
    finally:
        shutil.rmtree(path)


def user_env(scratch: Path) -> dict[str, str]:
    env = migrated_env(scratch / "netmetrics.sqlite3")
    subprocess.run(["chown", "-R", f"{NOBODY}:{NOBODY}", str(scratch)], check=True)
    return {**env, "HOME": str(scratch)}


def test_the_units_verify(requires_systemd) -> None:
    with tempfile.TemporaryDirectory() as out:
        # As installed, but with the checkout (and its venv) where /opt/netmetrics would be.
        paths = []
        for path in UNITS.values():
            paths.append(Path(out) / path.name)
            paths[-1].write_text(path.read_text().replace(PREFIX, str(ROOT)))
        result = subprocess.run(
            ["systemd-analyze", "verify", *paths], capture_output=True, text=True
        )
    assert result.returncode == 0 and result.stderr == "", result.stderr


def test_the_sampler_unit_has_the_capabilities_the_sampler_checks_for() -> None:
    assert unit_caps("sampler") == list(capabilities.NEEDED)
    assert unit("web")["CapabilityBoundingSet"] == [""] and unit("web")["AmbientCapabilities"] == [
        ""
    ]


@pytest.fixture
def pair(requires_bpf) -> Iterator[VethPair]:
    # tracefs as the unit's Wants=sys-kernel-tracing.mount gives it, and bpffs as systemd mounts
    # it at boot: the service cannot mount either.
    tcp_health.mount_tracefs()
    mount_bpffs()
    with veth_pair(index=9) as pair:
        yield pair


def prepare_bpffs() -> None:
    """The sampler unit's ExecStartPre ("+": as root), for the test's user instead of
    netmetrics: bpffs, and the sampler's directory in it."""
    [line] = unit("sampler")["ExecStartPre"]
    script = shlex.split(line.removeprefix("+"))
    script = [word.replace("netmetrics:netmetrics", f"{NOBODY}:{NOBODY}") for word in script]
    subprocess.run(script, check=True)


def start_unit_sampler(env: dict[str, str], scratch: Path, argv: list[str], log: Path):
    with log.open("w") as out:
        proc = subprocess.Popen(
            as_unit_user(unit_caps("sampler"), scratch / "run", *argv),
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    wait_for(lambda: proc.poll() is not None or "sampling every" in log.read_text(), 60,
             "the sampler to start")  # fmt: skip
    assert proc.poll() is None, log.read_text()
    return proc


@pytest.mark.parametrize("mode", ["auto", "native"])
def test_the_sampler_counts_exactly_with_only_its_units_capabilities(pair, scratch, mode) -> None:
    """As the unit runs it: counts exactly; a stop and a start (systemctl restart) lose
    nothing, since --persist leaves the counters counting; --detach, as the same user, then
    removes every program and pin. The user may not open programs by id (CAP_SYS_ADMIN): native
    XDP is adopted and removed by the pinned program's own fd."""
    env = user_env(scratch)
    prepare_bpffs()
    args = ["--iface", pair.host_iface, "--mode", mode]
    argv = command("sampler", NETMETRICS_SAMPLER_ARGS=args)
    assert "--persist" in argv
    query = "SELECT pid, rx_total_packets, rx_total_bytes FROM metrics_samplerrun"
    proc = start_unit_sampler(env, scratch, argv, scratch / "first.log")
    try:
        assert "netmetrics_tc" in pair.filters("egress")
        pair.send_udp(10)
        wait_for(lambda: db_rows(env, query) == [(proc.pid, 10, 10 * UDP_FRAME)], 10,
                 "the 10 datagrams in the run")  # fmt: skip
    finally:
        proc.terminate()
        assert proc.wait(30) == 0, (scratch / "first.log").read_text()
    assert "netmetrics_tc" in pair.filters("egress")  # still counting
    assert bool(pair.xdp()) == (mode == "native")
    pair.send_udp(5)
    proc = start_unit_sampler(env, scratch, argv, scratch / "second.log")
    try:
        wait_for(lambda: db_rows(env, query) == [(proc.pid, 15, 15 * UDP_FRAME)], 10,
                 "the 5 sent in between, in the same run")  # fmt: skip
    finally:
        proc.terminate()
        assert proc.wait(30) == 0, (scratch / "second.log").read_text()
    detach = [*argv[: argv.index("--persist")], "--detach", pair.host_iface]
    result = subprocess.run(
        as_unit_user(unit_caps("sampler"), scratch / "run", *detach),
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert pair.attached() == "", pair.attached()
    assert not kept_directory().exists()
    assert (scratch / "run").stat().st_uid == NOBODY and not list((scratch / "run").iterdir())


@pytest.mark.parametrize("dropped", list(capabilities.NEEDED))
def test_without_one_capability_the_sampler_says_which(requires_bpf, scratch, dropped: str) -> None:
    env = user_env(scratch)
    caps = [cap for cap in unit_caps("sampler") if cap != dropped]
    argv = command("sampler", NETMETRICS_SAMPLER_ARGS=["--iface", "lo"])
    result = subprocess.run(
        as_unit_user(caps, scratch / "run", *argv),
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 1 and result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("CommandError: netmetrics needs root, or these capabilities")
    assert f"that it lacks: {dropped} " in result.stderr, result.stderr
    assert [cap for cap in capabilities.NEEDED if cap in result.stderr] == [dropped]


def test_root_lacks_nothing() -> None:
    assert capabilities.missing(mask=(1 << 64) - 1) == []
    assert capabilities.missing(mask=0) == list(capabilities.NEEDED)


@pytest.fixture
def installing(requires_root, requires_systemd) -> None:
    if os.environ.get("CI") != "true" and os.environ.get("NETMETRICS_TEST_INSTALL") != "1":
        pytest.skip(
            "installs into /opt, /etc and /var/lib for real: CI=true or NETMETRICS_TEST_INSTALL=1"
        )
    if Path(PREFIX).exists() or Path("/etc/netmetrics").exists():
        pytest.fail(
            f"netmetrics is installed here already ({PREFIX}): not touching it", pytrace=False
        )


INSTALLED = [
    Path(PREFIX) / "manage.py",
    Path(PREFIX) / ".venv/bin/daphne",
    Path("/etc/netmetrics/netmetrics.env"),
    Path("/var/lib/netmetrics/netmetrics.sqlite3"),
    Path("/etc/systemd/system/netmetrics-sampler.service"),
    Path("/etc/systemd/system/netmetrics-web.service"),
    Path("/etc/systemd/system/multi-user.target.wants/netmetrics-sampler.service"),
    Path("/etc/systemd/system/multi-user.target.wants/netmetrics-web.service"),
]


# The installed service reads its configuration from /etc/netmetrics/netmetrics.env (SQLite in
# /var/lib/netmetrics), not from the database the test run uses.
SERVICE_ENV = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}


def make(target: str, **env: str) -> str:
    result = subprocess.run(
        ["make", "-s", target], cwd=ROOT, env={**SERVICE_ENV, **env}, capture_output=True,
        text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_install_twice_serve_then_uninstall_leaves_nothing(installing, pair) -> None:
    try:
        make("install")
        assert all(path.exists() for path in INSTALLED), [p for p in INSTALLED if not p.exists()]
        config = Path("/etc/netmetrics/netmetrics.env")
        # The operator's edits; words with spaces need no quotes, as systemd reads the file.
        edits = "NETMETRICS_SAMPLER_ARGS=--iface lo --no-flows\nNETMETRICS_PORT=8767\n"
        config.write_text(config.read_text() + edits)
        assert "keeping /etc/netmetrics/netmetrics.env" in make("install")  # idempotent
        assert config.read_text().endswith("NETMETRICS_PORT=8767\n")
        data = Path("/var/lib/netmetrics")
        user = subprocess.run(["id", "-u", "netmetrics"], capture_output=True, text=True)
        uid = int(user.stdout)
        assert all(p.stat().st_uid == uid for p in (data, data / "netmetrics.sqlite3"))
        assert Path(PREFIX, ".venv").stat().st_uid == 0  # the service's code is root's
        assert web_unit_answers() == 200
        installed_sampler_persists(pair)
    finally:
        out = make("uninstall")
    assert "kept /etc/netmetrics and /var/lib/netmetrics" in out
    assert pair.attached() == "" and not Path("/sys/fs/bpf/netmetrics").exists(), out
    assert "clsact" not in sh("tc", "qdisc", "show", "dev", pair.host_iface), out
    assert [p for p in INSTALLED if p.exists()] == [INSTALLED[2], INSTALLED[3]]
    make("uninstall")  # idempotent
    make("uninstall", PURGE="1")
    assert [p for p in INSTALLED if p.exists()] == []
    assert subprocess.run(["id", "netmetrics"], capture_output=True).returncode != 0


def installed_sampler_persists(pair: VethPair) -> None:
    """The installed sampler, as the unit runs it (--persist) but as root, stopped: it leaves
    its programs and pins for uninstall to remove."""
    argv = [
        word.replace("$NETMETRICS_SAMPLER_ARGS", f"--iface={pair.host_iface}")
        for word in unit("sampler")["ExecStart"][0].split()
    ]
    log = Path(tempfile.mkdtemp()) / "sampler.log"
    with log.open("w") as out:
        proc = subprocess.Popen(argv, cwd=PREFIX, stdout=out, stderr=subprocess.STDOUT,
                                env={**SERVICE_ENV, **config_env()})  # fmt: skip
    try:
        wait_for(lambda: proc.poll() is not None or "sampling every" in log.read_text(), 60,
                 "the installed sampler")  # fmt: skip
    finally:
        proc.terminate()
        assert proc.wait(30) == 0, log.read_text()
    assert "netmetrics_tc" in pair.filters("egress") and Path("/sys/fs/bpf/netmetrics").exists()


def config_env() -> dict[str, str]:
    """The installed configuration file's settings."""
    return dict(
        line.split("=", 1)
        for line in Path(unit("web")["EnvironmentFile"][0]).read_text().splitlines()
        if line and not line.startswith("#")
    )


def web_unit_answers() -> int:
    """The installed web unit's ExecStart with its EnvironmentFile, as its user with no
    capabilities: the status of GET /api/interfaces."""
    import http.client

    settings = unit("web")
    env = config_env()
    argv = [
        env.get(word[2:-1], word) if word.startswith("${") else word
        for word in settings["ExecStart"][0].split()
    ]
    proc = subprocess.Popen(
        ["setpriv", "--reuid=netmetrics", "--regid=netmetrics", "--clear-groups", "--inh-caps=-all",
         "--bounding-set=-all", *argv],
        cwd=settings["WorkingDirectory"][0], env={"PATH": "/usr/bin:/bin", **env},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:

        def status() -> int:
            try:
                conn = http.client.HTTPConnection(
                    "127.0.0.1", int(env["NETMETRICS_PORT"]), timeout=2
                )
                conn.request("GET", "/api/interfaces")
                return conn.getresponse().status
            except OSError:
                return 0  # not listening yet

        return wait_for(status, 30, "the web unit to answer")
    finally:
        proc.terminate()
        proc.wait(10)


def test_the_sampler_unit_leaves_the_kernel_headers_readable() -> None:
    """BCC compiles against /lib/modules/$(uname -r)/build; ProtectKernelModules hides
    /lib/modules, and the sampler then stops with "kernel headers ... are missing" (found by
    running the command line in a mount namespace set up as that option does)."""
    assert "ProtectKernelModules" not in unit("sampler")
    assert unit("sampler")["InaccessiblePaths"][0].split() == [
        "-/etc/shadow", "-/etc/gshadow", "-/etc/ssh", "-/etc/sudoers", "-/etc/sudoers.d",
    ]  # fmt: skip
