"""The reaper: a tiny process that leads a command's process group and ends it with its owner.

Run as ``python -I -S reaper.py OWNER_PID GRACE LC_CTYPE DEADLINE -- ARGV...`` by
:func:`connectsw.core.supervisor.run` in a new session, so the reaper's pid is
the group id. It imports only the standard library (``-S``: no site packages),
so it starts in a few milliseconds. It:

- asks Linux to send it SIGTERM when its owner dies (``PR_SET_PDEATHSIG``, see
  prctl(2)), then checks ``getppid()`` once to close the race with an owner
  that died before that call; it also polls ``getppid()`` every 0.5 s (other
  systems, or an owner thread that exits before the owner does);
- makes itself a child subreaper (``PR_SET_CHILD_SUBREAPER``), so descendants
  that leave the group (``setsid``) are re-parented to it and still ended;
- spawns ARGV with the default signal mask and dispositions, in its group;
- when ARGV exits, ends whatever it left behind and exits with ARGV's code
  (``128 + signal`` when a signal ended it);
- on SIGTERM, SIGHUP, SIGINT or its owner's death: SIGTERM to the group, waits
  GRACE seconds, SIGKILL to whatever is left, then exits with ``128 + signal``;
- at DEADLINE (a ``time.monotonic()`` value, the same clock in every process of
  the host; ``-`` for none) it does the same on its own and exits with
  :data:`DEADLINE_EXIT`: the attempt's timeout holds even when its owner is
  stopped (``kill -STOP`` of a Dask worker) and cannot end the group (issue 5,
  kind 1).

LC_CTYPE is ``=VALUE``, or ``-`` when unset: Python may set it at start
(PEP 538, C locale coercion) and the command must get the caller's value.

Exit code 127 with one line on stderr: ARGV could not be started.
Written here rather than taken from a library: no stdlib or small library does
"group leader with a parent-death signal" (``preexec_fn`` is unsafe in threads).
"""

# _signal, not signal: the enum wrappers cost more to import than the rest of the reaper;
# no contextlib either, for the same reason.
import _signal as signal
import os
import sys
import time

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
WATCHED = {signal.SIGCHLD, signal.SIGTERM, signal.SIGHUP, signal.SIGINT}
OWNER_POLL = 0.5
#: Exit code after ending the group at its deadline (128 + SIGALRM, as timeout(1) -s ALRM).
DEADLINE_EXIT = 142


def _prctl(option, value):
    """Linux prctl(2); False where it does not exist."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(option, value, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _leftovers(me):
    """Pids (not zombies, not ``me``) in group ``me`` or whose parent is ``me``."""
    found: list[int] = []
    try:
        names = os.listdir("/proc")
    except OSError:
        return found
    for name in names:
        if not name.isdigit() or int(name) == me:
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as fh:
                fields = fh.read().rsplit(b")", 1)[1].split()
        except (OSError, IndexError):
            continue
        # After "(comm)": state, ppid, pgrp.
        if fields[0] != b"Z" and (int(fields[1]) == me or int(fields[2]) == me):
            found.append(int(name))
    return found


def _reap():
    """Reap every exited child; False once this process has no children left."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return False
        if pid == 0:
            return True


def _send(send, pid, sig):
    try:
        send(pid, sig)
    except OSError:
        return False
    return True


def _signal_all(me, sig):
    if sig != signal.SIGKILL:
        # The reaper is in the group: its own copy stays blocked and is consumed later.
        _send(os.killpg, me, sig)
    for pid in _leftovers(me):
        _send(os.kill, pid, sig)


def end_all(me, grace):
    """TERM the group and our re-parented descendants, wait ``grace`` s, KILL the rest.

    ``me`` is this process's pid, its group's leader and a child subreaper. A
    descendant re-parented to us during the grace (its parent just died of the
    TERM) gets its TERM then. Also used by :mod:`connectsw.core.isolation` (through
    :func:`watch`) for a process-isolated agent."""
    if not _reap():
        return
    termed = set(_leftovers(me))
    _signal_all(me, signal.SIGTERM)
    end = time.monotonic() + grace
    while time.monotonic() < end:
        if not _reap():
            return
        for pid in _leftovers(me):
            if pid not in termed:
                termed.add(pid)
                _send(os.kill, pid, signal.SIGTERM)
        time.sleep(0.02)
    for _ in range(50):
        _signal_all(me, signal.SIGKILL)
        time.sleep(0.02)
        if not _reap():
            return


def _code(status):
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.waitstatus_to_exitcode(status)


def arm(owner):
    """Make this process a keeper of what it will start: block the watched signals
    (:func:`watch` takes them), SIGTERM when ``owner`` (our parent) dies, child
    subreaper. False when the owner has already gone (then start nothing)."""
    # An ignored SIGCHLD survives exec and fork and would reap children behind our back.
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_BLOCK, WATCHED)
    _prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    _prctl(PR_SET_CHILD_SUBREAPER, 1)
    return os.getppid() == owner


def watch(owner, child, grace, deadline):
    """Wait for ``child``; end the group and every re-parented descendant (:func:`end_all`)
    when it exits, on a watched signal, when ``owner`` dies or at ``deadline`` (a
    ``time.monotonic()`` value or None). Returns the exit code for this process: the
    child's (``128 + signal`` when a signal ended it), ``128 + signal`` when stopped,
    :data:`DEADLINE_EXIT` at the deadline. Call :func:`arm` first."""
    me = os.getpid()
    while True:
        wait = OWNER_POLL
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                end_all(me, grace)
                return DEADLINE_EXIT
            wait = min(wait, left)
        info = signal.sigtimedwait(WATCHED, wait)
        if info is None:
            if os.getppid() == owner:
                continue
            stop = signal.SIGTERM
        elif info.si_signo == signal.SIGCHLD:
            try:
                pid, status = os.waitpid(child, os.WNOHANG)
            except ChildProcessError:
                pid, status = child, 0
            if pid == child:
                end_all(me, grace)
                return _code(status)
            continue
        else:
            stop = info.si_signo
        end_all(me, grace)
        return 128 + stop


def main(argv):
    owner = int(argv[1])
    grace = float(argv[2])
    env = dict(os.environ)
    env.pop("LC_CTYPE", None)
    if argv[3].startswith("="):
        env["LC_CTYPE"] = argv[3][1:]
    deadline = None if argv[4] == "-" else float(argv[4])
    command = argv[6:]
    if not arm(owner):
        return 128 + signal.SIGTERM
    try:
        child = os.posix_spawnp(
            command[0],
            command,
            env,
            setsigmask=(),
            # Python ignores SIGPIPE and SIGXFSZ; the command gets the defaults.
            setsigdef=(signal.SIGPIPE, signal.SIGXFSZ, *WATCHED),
        )
    except OSError as exc:
        sys.stderr.write(f"cannot run {command[0]}: {exc.strerror}\n")
        return 127
    return watch(owner, child, grace, deadline)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
