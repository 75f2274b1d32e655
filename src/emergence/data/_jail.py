"""Inside the sandbox: build a minimal root, set limits, drop every privilege, exec.

Run by :mod:`emergence.data.sandbox` as ``unshare --net --mount --pid --fork ...
python -I -B _jail.py SPEC_JSON`` with the program on stdin. This file is a standalone
script (stdlib only) so that nothing of the project is imported into the jail. Steps:

1. make every mount private (this mount namespace only; the host is untouched) and
   build a new root on a small tmpfs holding, read-only, exactly: the interpreter's
   install prefix (``sys.base_prefix``, never its parent, e.g. not /root for pyenv),
   the shared-library and program dirs (/usr/lib*, /lib*, /usr/bin, /bin),
   /etc/ld.so.cache, /dev/null, /dev/zero, /dev/random, /dev/urandom; a fresh /proc of
   the PID namespace; and a size-limited tmpfs /scratch, the only writable directory,
   holding the program as /scratch/main.py. Directories made for these are mode 0711
   (not listable). Nothing else of the host exists there: no /etc, /root, /home, /tmp,
   no project files;
2. move the new root onto / and chroot into it, so the old root is unreachable;
3. fork; the child drops privileges: bounding set emptied cap by cap while still
   privileged, ambient set cleared, supplementary groups dropped, real/effective/saved
   gid and uid set to an unprivileged id (as real root; in a user namespace the id
   stays the namespace's root, with no capability), effective/permitted/inheritable
   sets zeroed, no_new_privs set; then it checks in /proc/self/status that all five
   capability sets are empty; then it sets resource limits (address space, CPU
   seconds, processes, file size, open files);
4. the child execs the interpreter (``-I``, isolated mode) on the program with a minimal
   environment (PATH, HOME, TMPDIR, PYTHONHASHSEED); this process (PID 1 of the namespace) waits and reports a death by
   signal on stderr. When it exits, the kernel kills whatever the program left running.
Any failure in steps 1-3 exits with code 120 before any untrusted code runs.
"""
import ctypes
import json
import os
import resource
import sys

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_NOATIME, MS_NODIRATIME, MS_REMOUNT, MS_BIND = 1024, 2048, 32, 4096
MS_MOVE, MS_REC, MS_PRIVATE = 8192, 16384, 1 << 18
KEPT_FLAGS = MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_NOATIME | MS_NODIRATIME  # = statvfs ST_* bits
PR_SET_NO_NEW_PRIVS, PR_CAPBSET_DROP = 38, 24
PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL = 47, 4
SETUP_FAILED = 120
STAGING = ("/mnt", "/media", "/srv", "/opt", "/tmp")  # where the new root is assembled
LIBRARY_DIRS = ("/usr/lib", "/usr/lib32", "/usr/lib64", "/usr/libx32", "/usr/bin",
                "/lib", "/lib32", "/lib64", "/libx32", "/bin")
DEVICES = ("/dev/null", "/dev/zero", "/dev/random", "/dev/urandom")
WORK = "/scratch"
CAP_LINES = ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")

libc = ctypes.CDLL(None, use_errno=True)


def fail(msg: str) -> None:
    sys.stderr.write(f"sandbox setup failed: {msg}\n")
    sys.exit(SETUP_FAILED)


def mount(src, target, fstype, flags, data=None) -> None:
    enc = lambda s: None if s is None else s.encode()  # noqa: E731
    if libc.mount(enc(src), enc(target), enc(fstype), ctypes.c_ulong(flags), enc(data)):
        err = ctypes.get_errno()
        fail(f"mount {src or fstype} on {target}: {os.strerror(err)}")


def is_within(path: str, parent: str) -> bool:
    return path == parent or path.startswith(parent.rstrip("/") + "/")


def bind_sources(python: str) -> list[str]:
    """Host paths the interpreter needs, resolved, outermost first, none inside another."""
    prefixes = {os.path.realpath(p) for p in (sys.base_prefix, sys.base_exec_prefix)}
    prefixes.add(os.path.dirname(os.path.realpath(python)))
    found = sorted(prefixes | {p for p in LIBRARY_DIRS + DEVICES + ("/etc/ld.so.cache",)
                               if os.path.lexists(p)}, key=len)
    if "/" in prefixes:
        fail("the interpreter's prefix is / (binding it would expose the whole host)")
    return [p for i, p in enumerate(found) if not any(is_within(p, q) for q in found[:i])]


def make_parents(path: str) -> None:
    """Create the missing directories above `path`, mode 0711 (enter, not list)."""
    parent = os.path.dirname(path)
    if not os.path.isdir(parent):
        make_parents(parent)
        os.mkdir(parent, 0o711)
        os.chmod(parent, 0o711)


def bind_read_only(src: str, root: str) -> None:
    """`src` at the same path under `root`: symlinks copied, the rest bound read-only."""
    target = root + src
    make_parents(target)
    if os.path.islink(src):
        os.symlink(os.readlink(src), target)
        return
    if os.path.isdir(src):
        os.mkdir(target, 0o711)
    else:
        open(target, "w").close()
    mount(src, target, None, MS_BIND)
    keep = os.statvfs(src).f_flag & KEPT_FLAGS
    if src not in DEVICES:
        keep |= MS_NODEV
    mount(None, target, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | keep)


def build_root(program: bytes, python: str, tmpfs_mb: int, uid: int) -> None:
    """Assemble the minimal root (step 1) and switch to it (step 2)."""
    mount(None, "/", None, MS_REC | MS_PRIVATE)
    sources = bind_sources(python)
    root = next((d for d in STAGING if os.path.isdir(d) and not os.path.islink(d)
                 and not any(is_within(s, d) for s in sources)), None)
    if root is None:
        fail(f"no directory to assemble the new root in (tried {', '.join(STAGING)})")
    mount("tmpfs", root, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,mode=0711")
    for src in sources:
        bind_read_only(src, root)
    os.mkdir(root + "/proc", 0o555)
    mount("proc", root + "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    os.mkdir(root + WORK)
    mount("tmpfs", root + WORK, "tmpfs", MS_NOSUID | MS_NODEV,
          f"size={tmpfs_mb}m,mode=0700,uid={uid},gid={uid}")
    with open(root + WORK + "/main.py", "wb") as fh:
        fh.write(program)
    os.chown(root + WORK + "/main.py", uid, uid)
    mount(None, root, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV)
    os.chdir(root)
    mount(".", "/", None, MS_MOVE)
    os.chroot(".")
    os.chdir(WORK)


class CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32)]


def prctl(option: int, arg: int, what: str) -> None:
    if libc.prctl(option, ctypes.c_ulong(arg), ctypes.c_ulong(0), ctypes.c_ulong(0), ctypes.c_ulong(0)):
        fail(f"{what}: {os.strerror(ctypes.get_errno())}")


def drop_privileges(uid: int, real_root: bool) -> None:
    """Step 3: no capability in any set, an unprivileged uid as real root, verified."""
    with open("/proc/sys/kernel/cap_last_cap") as fh:
        last_cap = int(fh.read())
    for cap in range(last_cap + 1):
        prctl(PR_CAPBSET_DROP, cap, f"cannot drop capability {cap} from the bounding set")
    prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, "cannot clear the ambient set")
    if real_root:
        try:
            os.setgroups([])
            os.setresgid(uid, uid, uid)
            os.setresuid(uid, uid, uid)
        except OSError as exc:
            fail(f"cannot switch to uid {uid}: {exc}")
    header = CapHeader(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3
    if libc.capset(ctypes.byref(header), (CapData * 2)()):
        fail(f"capset failed: {os.strerror(ctypes.get_errno())}")
    prctl(PR_SET_NO_NEW_PRIVS, 1, "cannot set no_new_privs")
    with open("/proc/self/status") as fh:
        caps = dict(line.split(":", 1) for line in fh if line.startswith(CAP_LINES))
    left = {k: v.strip() for k, v in caps.items() if int(v, 16)}
    if len(caps) != len(CAP_LINES) or left:
        fail(f"capabilities remain after dropping them: {left or caps}")


def set_limits(lim: dict) -> None:
    mb = 1 << 20
    cpu = lim["cpu_seconds"]
    try:
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))  # SIGXCPU first, SIGKILL after
        for res, value in [(resource.RLIMIT_AS, lim["memory_mb"] * mb),
                           (resource.RLIMIT_NPROC, lim["max_processes"]),
                           (resource.RLIMIT_FSIZE, lim["file_size_mb"] * mb),
                           (resource.RLIMIT_NOFILE, lim["open_files"]),
                           (resource.RLIMIT_CORE, 0)]:
            resource.setrlimit(res, (value, value))
    except (OSError, ValueError) as exc:
        fail(f"cannot set resource limits: {exc}")


def main() -> None:
    lim = json.loads(sys.argv[1])
    real_root = lim["real_root"]
    uid = lim["uid"] if real_root else 0
    build_root(sys.stdin.buffer.read(), lim["python"], lim["tmpfs_mb"], uid)
    pid = os.fork()
    if pid == 0:
        drop_privileges(uid, real_root)
        set_limits(lim)
        env = {"PATH": "/usr/bin:/bin", "HOME": WORK, "TMPDIR": WORK, "PYTHONHASHSEED": "0"}
        try:
            os.execve(lim["python"], [lim["python"], "-I", "-B", "main.py"], env)
        except OSError as exc:
            fail(f"cannot run the interpreter {lim['python']}: {exc}")
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        sys.stderr.write(f"sandbox: program terminated by signal {sig}\n")
        sys.exit(128 + sig)
    sys.exit(os.WEXITSTATUS(status))


if __name__ == "__main__":
    main()
