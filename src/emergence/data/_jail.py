"""Inside the sandbox: lock the filesystem, set limits, drop privileges, exec the program.

Run by :mod:`emergence.data.sandbox` as ``unshare --net --mount --pid --fork ...
python -I -B _jail.py LIMITS_JSON`` with the program on stdin. This file is a
standalone script (stdlib only) so that nothing of the project is imported into the
jail. Steps, in order:

1. make every mount private, then remount every mount read-only (in this mount
   namespace only; the host is untouched);
2. mount a size-limited tmpfs on /dev/shm (never where the interpreter or the project
   live, unlike /tmp) and write the program to /dev/shm/work/main.py: the only
   writable place, thrown away with the namespace;
3. set resource limits (address space, CPU seconds, processes, file size, open files);
4. drop privileges: as root, switch to an unprivileged uid that keeps only
   CAP_DAC_READ_SEARCH (so the interpreter under a private home stays readable);
   in a user namespace, drop every capability; then forbid regaining any;
5. exec the interpreter on the program with an empty environment, in a child; this
   process (PID 1 of the namespace) waits and reports a death by signal on stderr.
When it exits, the kernel kills whatever the program left running in the namespace.
A failure in steps 1-4 exits with code 120 before any untrusted code runs.
"""
import ctypes
import json
import os
import resource
import sys

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 16384, 1 << 18
PR_SET_KEEPCAPS, PR_SET_NO_NEW_PRIVS, PR_CAPBSET_DROP = 8, 38, 24
PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE = 47, 2
CAP_DAC_READ_SEARCH, CAP_LAST = 2, 63
SETUP_FAILED = 120
SCRATCH = "/dev/shm"
WORK = SCRATCH + "/work"

libc = ctypes.CDLL(None, use_errno=True)


def fail(msg: str) -> None:
    sys.stderr.write(f"sandbox setup failed: {msg}\n")
    sys.exit(SETUP_FAILED)


def mount(src, target, fstype, flags, data=None) -> int:
    enc = lambda s: None if s is None else s.encode()  # noqa: E731
    rc = libc.mount(enc(src), enc(target), enc(fstype), ctypes.c_ulong(flags), enc(data))
    return 0 if rc == 0 else ctypes.get_errno()


def mount_points() -> list[tuple[str, int]]:
    """(mount point, flags to keep) for every mount, shallowest first."""
    keep = {"nosuid": MS_NOSUID, "nodev": MS_NODEV, "noexec": MS_NOEXEC}
    out = []
    with open("/proc/self/mountinfo") as fh:
        for line in fh:
            parts = line.split()
            point = parts[4].encode().decode("unicode_escape")
            flags = sum(keep.get(o, 0) for o in parts[5].split(","))
            out.append((point, flags))
    return sorted(set(out), key=lambda p: p[0].count("/"))


def lock_filesystem(tmpfs_mb: int, uid: int) -> None:
    if mount(None, "/", None, MS_REC | MS_PRIVATE):
        fail("cannot make mounts private")
    for point, flags in mount_points():
        err = mount(None, point, None, MS_REMOUNT | MS_BIND | MS_RDONLY | flags)
        if err and point == "/":
            fail(f"cannot remount / read-only ({os.strerror(err)})")
    opts = f"size={tmpfs_mb}m,mode=0700,uid={uid},gid={uid}"
    if mount("tmpfs", SCRATCH, "tmpfs", MS_NOSUID | MS_NODEV, opts):
        fail("cannot mount the work tmpfs")


class CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32)]


def set_capabilities(caps: list[int]) -> None:
    """Effective = permitted = inheritable = `caps`; bounding set reduced to `caps`."""
    for cap in range(CAP_LAST + 1):
        if cap not in caps:
            libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0)
    mask = sum(1 << c for c in caps)
    header = CapHeader(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3
    data = (CapData * 2)(CapData(mask, mask, mask), CapData(0, 0, 0))
    if libc.capset(ctypes.byref(header), data):
        fail(f"capset failed ({os.strerror(ctypes.get_errno())})")
    for cap in caps:
        if libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap, 0, 0):
            fail("cannot keep CAP_DAC_READ_SEARCH across exec")


def drop_privileges(uid: int, real_root: bool) -> None:
    if real_root:
        libc.prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0)
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)
        set_capabilities([CAP_DAC_READ_SEARCH])
    else:
        set_capabilities([])
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0):
        fail("cannot set no_new_privs")


def set_limits(lim: dict) -> None:
    mb = 1 << 20
    cpu = lim["cpu_seconds"]
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))  # SIGXCPU first, SIGKILL after
    for res, value in [(resource.RLIMIT_AS, lim["memory_mb"] * mb),
                       (resource.RLIMIT_NPROC, lim["max_processes"]),
                       (resource.RLIMIT_FSIZE, lim["file_size_mb"] * mb),
                       (resource.RLIMIT_NOFILE, lim["open_files"]),
                       (resource.RLIMIT_CORE, 0)]:
        resource.setrlimit(res, (value, value))


def main() -> None:
    lim = json.loads(sys.argv[1])
    program = sys.stdin.buffer.read()
    real_root = lim["real_root"]
    uid = lim["uid"] if real_root else 0
    lock_filesystem(lim["tmpfs_mb"], uid)
    os.makedirs(WORK, mode=0o700)
    with open(WORK + "/main.py", "wb") as fh:
        fh.write(program)
    os.chown(WORK, uid, uid)
    os.chown(WORK + "/main.py", uid, uid)
    os.chdir(WORK)
    pid = os.fork()
    if pid == 0:
        drop_privileges(uid, real_root)
        set_limits(lim)
        env = {"PATH": "/usr/bin:/bin", "HOME": WORK, "TMPDIR": WORK, "PYTHONHASHSEED": "0"}
        os.execve(lim["python"], [lim["python"], "-I", "-B", "main.py"], env)
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        sys.stderr.write(f"sandbox: program terminated by signal {sig}\n")
        sys.exit(128 + sig)
    sys.exit(os.WEXITSTATUS(status))


if __name__ == "__main__":
    main()
