"""ctypes bindings to the libbpf.so.1 calls netmetrics needs: netlink attach, query, test run,
batch reads of maps.

The structures follow libbpf 1.1's headers (Debian 12's libbpf1). Each starts with its own size,
which is how libbpf stays compatible in both directions: a newer libbpf treats fields we do not
pass as zero. Functions return a negative errno on failure; `check` turns that into OSError.
"""

import ctypes
import errno
import logging
import os
from functools import cache

from bpf.errors import PreflightError

log = logging.getLogger("netmetrics.bpf")

XDP_FLAGS_UPDATE_IF_NOEXIST = 1 << 0
XDP_FLAGS_SKB_MODE = 1 << 1
XDP_FLAGS_DRV_MODE = 1 << 2
XDP_FLAGS_HW_MODE = 1 << 3

BPF_TC_INGRESS = 1 << 0
BPF_TC_EGRESS = 1 << 1
BPF_TC_F_REPLACE = 1 << 0

BPF_OBJ_NAME_LEN = 16


class _Opts(ctypes.Structure):
    """A libbpf options struct: `sz` set to our size of it, everything else zero unless given.

    `sz` is every options struct's first field; a subclass's `_fields_` are the ones after it.
    """

    _fields_ = [("sz", ctypes.c_size_t)]

    def __init__(self, **fields: object) -> None:
        super().__init__(sz=ctypes.sizeof(self), **fields)


def _fields(names: str, ctype: type) -> list[tuple[str, type]]:
    """Fields of one C type, as a C declaration lists them: ``__u32 a, b;``."""
    return [(name, ctype) for name in names.split()]


_u32, _ptr = ctypes.c_uint32, ctypes.c_void_p


class XdpAttachOpts(_Opts):
    _fields_ = [("old_prog_fd", ctypes.c_int)]


class XdpQueryOpts(_Opts):
    _fields_ = [
        *_fields("prog_id drv_prog_id hw_prog_id skb_prog_id", _u32),
        ("attach_mode", ctypes.c_uint8),
    ]


class TcHook(_Opts):
    _fields_ = [*_fields("ifindex attach_point", ctypes.c_int), ("parent", _u32)]


class TcOpts(_Opts):
    _fields_ = [("prog_fd", ctypes.c_int), *_fields("flags prog_id handle priority", _u32)]


class TestRunOpts(_Opts):
    """struct bpf_test_run_opts, whose fields libbpf's header declares in these groups."""

    _fields_ = [
        *_fields("data_in data_out", _ptr),
        *_fields("data_size_in data_size_out", _u32),
        *_fields("ctx_in ctx_out", _ptr),
        *_fields("ctx_size_in ctx_size_out retval", _u32),
        ("repeat", ctypes.c_int),
        *_fields("duration flags cpu batch_size", _u32),
    ]


class ProgInfo(ctypes.Structure):
    """The head of the kernel's struct bpf_prog_info, up to the name: all we read of it."""

    _fields_ = [
        ("type", ctypes.c_uint32),
        ("id", ctypes.c_uint32),
        ("tag", ctypes.c_uint8 * 8),
        ("jited_prog_len", ctypes.c_uint32),
        ("xlated_prog_len", ctypes.c_uint32),
        ("jited_prog_insns", ctypes.c_uint64),
        ("xlated_prog_insns", ctypes.c_uint64),
        ("load_time", ctypes.c_uint64),
        ("created_by_uid", ctypes.c_uint32),
        ("nr_map_ids", ctypes.c_uint32),
        ("map_ids", ctypes.c_uint64),
        ("name", ctypes.c_char * BPF_OBJ_NAME_LEN),
    ]


_PRINT_FN = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p)
_libc = ctypes.CDLL(None)


@_PRINT_FN
def _print_to_log(level: int, fmt: bytes, args: int) -> int:
    """libbpf's messages (kernel netlink errors among them) go to our log, not raw to stderr."""
    buf = ctypes.create_string_buffer(512)
    _libc.vsnprintf(buf, ctypes.sizeof(buf), fmt, ctypes.c_void_p(args))
    log.debug("libbpf: %s", buf.value.decode(errors="replace").rstrip())
    return 0


@cache
def lib() -> ctypes.CDLL:
    """libbpf.so.1, typed, its messages sent to our log."""
    try:
        so = ctypes.CDLL("libbpf.so.1", use_errno=True)
    except OSError:
        raise PreflightError("libbpf.so.1 is missing: apt-get install libbpf1") from None
    p = ctypes.POINTER
    signatures: dict[str, list[type]] = {
        "bpf_xdp_attach": [ctypes.c_int, ctypes.c_int, ctypes.c_uint32, p(XdpAttachOpts)],
        "bpf_xdp_detach": [ctypes.c_int, ctypes.c_uint32, p(XdpAttachOpts)],
        "bpf_xdp_query": [ctypes.c_int, ctypes.c_int, p(XdpQueryOpts)],
        "bpf_tc_hook_create": [p(TcHook)],
        "bpf_tc_hook_destroy": [p(TcHook)],
        "bpf_tc_attach": [p(TcHook), p(TcOpts)],
        "bpf_tc_detach": [p(TcHook), p(TcOpts)],
        "bpf_tc_query": [p(TcHook), p(TcOpts)],
        "bpf_prog_get_fd_by_id": [ctypes.c_uint32],
        "bpf_obj_get_info_by_fd": [ctypes.c_int, ctypes.c_void_p, p(ctypes.c_uint32)],
        "bpf_prog_test_run_opts": [ctypes.c_int, p(TestRunOpts)],
        "bpf_map_update_elem": [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_uint64],
        "bpf_map_delete_elem": [ctypes.c_int, ctypes.c_void_p],
        "bpf_map_lookup_elem": [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p],
        "bpf_obj_pin": [ctypes.c_int, ctypes.c_char_p],
        "bpf_obj_get": [ctypes.c_char_p],
        "bpf_link_create": [ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_void_p],
        # type, name, key size, value size, entries, opts (NULL: the defaults)
        "bpf_map_create": [ctypes.c_int, ctypes.c_char_p, *[ctypes.c_uint32] * 3, ctypes.c_void_p],
    }
    # fd, in_batch, out_batch, keys, values, count, opts (NULL: the defaults)
    batch: list[type] = [ctypes.c_int, _ptr, _ptr, _ptr, _ptr, p(ctypes.c_uint32), _ptr]
    signatures["bpf_map_lookup_batch"] = signatures["bpf_map_lookup_and_delete_batch"] = batch
    signatures["libbpf_num_possible_cpus"] = []
    for name, argtypes in signatures.items():
        fn = getattr(so, name)
        fn.argtypes = argtypes
        fn.restype = ctypes.c_int
    so.libbpf_set_print.argtypes = [_PRINT_FN]
    so.libbpf_set_print.restype = ctypes.c_void_p
    so.libbpf_set_print(_print_to_log)
    return so


def check(rc: int, what: str) -> int:
    """rc when it is not an error; else OSError(errno) saying what failed."""
    if rc < 0:
        raise OSError(-rc, f"{what}: {os.strerror(-rc)}")
    return rc


# The programs of the pinned sets this process has open, by id: (name, fd). Their names and fds
# are known without opening a program by id, which takes CAP_SYS_ADMIN (the service lacks it).
_KNOWN: dict[int, tuple[str, int]] = {}


def know(prog_fd: int, name: str) -> int:
    """Know an open program (until forget()); its id."""
    known_id = prog_id(prog_fd)
    _KNOWN[known_id] = (name, prog_fd)
    return known_id


def forget(known_id: int) -> None:
    _KNOWN.pop(known_id, None)


def prog_fd(prog_id: int) -> int | None:
    """A new fd of the loaded program with this id (the caller closes it); None when it is gone
    or, being none this process knows, it may not be opened by id."""
    if prog_id in _KNOWN:
        return os.dup(_KNOWN[prog_id][1])
    fd = lib().bpf_prog_get_fd_by_id(prog_id)
    if fd in (-errno.ENOENT, -errno.EPERM):
        return None
    return check(fd, f"cannot open BPF program id {prog_id}")


def prog_name(prog_id: int) -> str | None:
    """Name of the loaded program with this id; None as prog_fd() says."""
    if prog_id in _KNOWN:
        return _KNOWN[prog_id][0]
    fd = prog_fd(prog_id)
    if fd is None:
        return None
    try:
        info = ProgInfo()
        size = ctypes.c_uint32(ctypes.sizeof(info))
        check(lib().bpf_obj_get_info_by_fd(fd, ctypes.byref(info), size), "bpf_obj_get_info")
        return info.name.decode(errors="replace")
    finally:
        os.close(fd)


def prog_id(prog_fd: int) -> int:
    """The kernel's id of a loaded program (what XDP and TC queries report)."""
    info = ProgInfo()
    size = ctypes.c_uint32(ctypes.sizeof(info))
    check(lib().bpf_obj_get_info_by_fd(prog_fd, ctypes.byref(info), size), "bpf_obj_get_info")
    return info.id


BPF_NOEXIST = 1  # bpf_map_update_elem: create only
BPF_MAP_TYPE_ARRAY = 2
BPF_PERF_EVENT = 41  # enum bpf_attach_type: a perf event's program, as a bpf_link


# A ctypes value or array passed by reference: a map's key or value.
_Buffer = ctypes.c_uint32 | ctypes.c_uint64 | ctypes.Structure | ctypes.Array


def pin(fd: int, path: str) -> None:
    """Pin a program, map or link in bpffs: it then lives until the file is removed."""
    check(lib().bpf_obj_pin(fd, path.encode()), f"pin {path}")


def pinned(path: str) -> int:
    """A new file descriptor for what is pinned at path."""
    return check(lib().bpf_obj_get(path.encode()), f"open the pinned {path}")


def create_array(name: str, value_size: int, entries: int) -> int:
    """A new BPF array map of u32 index -> value_size bytes (zeroed); its fd."""
    rc = lib().bpf_map_create(BPF_MAP_TYPE_ARRAY, name.encode(), 4, value_size, entries, None)
    return check(rc, f"create the map {name}")


def update(map_fd: int, key: _Buffer, value: _Buffer) -> None:
    """Set one entry of a map (created or replaced)."""
    rc = lib().bpf_map_update_elem(map_fd, ctypes.byref(key), ctypes.byref(value), 0)
    check(rc, "update a map entry")


def lookup(map_fd: int, key: _Buffer, value: _Buffer) -> bool:
    """Read one entry into value; False when there is none."""
    rc = lib().bpf_map_lookup_elem(map_fd, ctypes.byref(key), ctypes.byref(value))
    if rc == -errno.ENOENT:
        return False
    check(rc, "read a map entry")
    return True


def delete(map_fd: int, key: _Buffer) -> None:
    """Delete one entry of a hash map (nothing when there is none)."""
    rc = lib().bpf_map_delete_elem(map_fd, ctypes.byref(key))
    if rc != -errno.ENOENT:
        check(rc, "delete a map entry")


def num_possible_cpus() -> int:
    """The CPUs a per-CPU map holds a value for: the possible ones, not only the online ones."""
    return check(lib().libbpf_num_possible_cpus(), "possible CPUs")


def read_batch(
    map_fd: int,
    keys: ctypes.Array[ctypes.c_char],
    values: ctypes.Array[ctypes.c_char],
    key_size: int,
    value_size: int,
    delete: bool = False,
) -> int:
    """Copy a hash map's entries into the buffers, a batch syscall at a time (and delete them
    with `delete`); the number copied. The buffers hold at most len(keys) // key_size entries;
    what does not fit waits for the next read."""
    batch = lib().bpf_map_lookup_and_delete_batch if delete else lib().bpf_map_lookup_batch
    capacity = len(keys) // key_size
    token = ctypes.c_uint32()  # where the kernel's walk of the buckets stopped
    total = 0
    while total < capacity:
        count = ctypes.c_uint32(capacity - total)
        rc = batch(
            map_fd,
            ctypes.byref(token) if total else None,
            ctypes.byref(token),
            ctypes.addressof(keys) + total * key_size,
            ctypes.addressof(values) + total * value_size,
            ctypes.byref(count),
            None,
        )
        total += count.value
        # ENOENT: every bucket walked. ENOSPC: the next bucket does not fit what is left of the
        # buffers, and no progress: either way the rest waits for the next read.
        if rc in (-errno.ENOENT, -errno.ENOSPC) or (rc == 0 and count.value == 0):
            break
        check(rc, "reading a map")
    return total
