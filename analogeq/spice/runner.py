"""Run netlists in ngspice through PySpice's shared-library binding and parse the results.

One ngspice instance serves the whole process (the shared library is not re-entrant); calls
are serialized by a lock. PySpice 1.5 has known problems with newer ngspice, handled here:

* it logs "Unsupported Ngspice version" for ngspice > 34: that record is filtered out;
* it raises on any stderr line that does not start with ``Warning:`` (ngspice prints
  informational ``Note:`` lines there): output is classified here instead, and only lines that
  are errors (or a missing result) fail a run;
* plots and circuits accumulate across runs: every run ends with ``destroy all`` and
  ``remcirc``, and the command history is freed periodically, so memory stays flat.

``NGSPICE_LIBRARY_PATH`` is set from :func:`find_libngspice` when it is unset.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes.util
import glob
import logging
import os
import re
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from analogeq.spice.netlist import Netlist

INSTALL_HINT = (
    "install ngspice's shared library: on Debian/Ubuntu `apt-get install -y ngspice libngspice0` "
    "(as root), on Fedora `dnf install ngspice`, on macOS `brew install ngspice`, with conda "
    "`conda install -c conda-forge ngspice`; or point NGSPICE_LIBRARY_PATH at libngspice.so.0"
)
"""How to install ngspice's shared library (appended to :class:`NgspiceNotFound` messages)."""

_SEARCH = (
    "/usr/lib/x86_64-linux-gnu/libngspice.so.0", "/usr/lib/aarch64-linux-gnu/libngspice.so.0",
    "/usr/lib/libngspice.so.0", "/usr/lib64/libngspice.so.0", "/usr/local/lib/libngspice.so.0",
    "/usr/local/lib/libngspice.so", "/opt/homebrew/lib/libngspice.dylib", "/usr/local/lib/libngspice.dylib",
)

_ERROR = re.compile(r"(^error|\berror:|timestep too small|simulation\(s\) aborted|dc solution failed|"
                    r"no convergence|iteration limit reached|unknown subckt|unknown model|could not find)", re.I)
_CONVERGENCE = re.compile(r"(timestep too small|aborted|solution failed|no convergence|iteration limit)", re.I)
_BENIGN = re.compile(r"^(warning|note|trying gmin|supplies reduced)", re.I)


class SpiceError(RuntimeError):
    """ngspice failed on a netlist; the message names the netlist path and ngspice's errors."""


class NgspiceNotFound(SpiceError):
    """The ngspice shared library (or PySpice) is missing; the message says how to install it."""


class SpiceConvergenceError(SpiceError):
    """ngspice did not converge (``.op`` Newton or ``.tran`` time step); names the netlist."""


class SpiceTimeout(SpiceError):
    """An ngspice run exceeded its wall-clock limit and was halted; names the netlist and the
    limit."""


MIN_TIMEOUT = 60.0
"""Smallest default wall-clock limit of one ngspice run [s]."""

SECONDS_PER_NODE_STEP = 2e-6
"""Budget per node and ``.tran`` step for the default limit [s]: about 20x ngspice's measured
cost on the 64-neuron block (a slow, shared machine must not trip it)."""

_TRAN = re.compile(r"^\.tran\s+(\S+)\s+(\S+)(?:\s+(\S+)\s+(\S+))?", re.I | re.M)
_DEFAULT_LIMIT: list[float | None] = [None]


def default_timeout(netlist: Netlist) -> float:
    """Wall-clock limit [s] of a run of ``netlist``: ``max(60 s, 2 us x nodes x .tran steps)``,
    the steps being ``t_stop / max_step`` of its ``.tran`` line (the solver takes at least that
    many), times ``(states / 128)^3`` above 128 states (a dense block's LU grows about
    cubically: a 256-neuron ``.op`` took 12-54 s on a loaded 2-core machine); 60 s (times the
    same factor) for a netlist without a transient."""
    scale = max(1.0, (len(netlist.state_nodes) / 128) ** 3)
    m = _TRAN.search(netlist.text)
    if m is None:
        return MIN_TIMEOUT * scale
    try:
        t_stop = float(m.group(2))
        t_max = float(m.group(4) or m.group(1))
    except ValueError:
        return MIN_TIMEOUT * scale
    steps = t_stop / t_max if t_max > 0 else 0.0
    nodes = max(len(netlist.state_nodes), 1) * 4  # a neuron is about 4 nodes (RC, TIA, rows)
    return max(MIN_TIMEOUT, SECONDS_PER_NODE_STEP * nodes * steps) * scale


@contextlib.contextmanager
def time_limit(seconds: float | None):
    """Within the block, ngspice runs stop after ``seconds`` [s] of wall time (``None``: the
    netlist's :func:`default_timeout`)."""
    if seconds is not None and not (isinstance(seconds, (int, float)) and seconds > 0
                                    and seconds < float("inf")):
        raise ValueError(f"the ngspice time limit must be a finite number of seconds > 0; got {seconds!r}")
    old = _DEFAULT_LIMIT[0]
    _DEFAULT_LIMIT[0] = seconds
    try:
        yield
    finally:
        _DEFAULT_LIMIT[0] = old


def find_libngspice() -> str | None:
    """Path of the ngspice shared library: ``$NGSPICE_LIBRARY_PATH``, the usual install
    locations, or the linker's search path; ``None`` when absent."""
    env = os.environ.get("NGSPICE_LIBRARY_PATH")
    if env and Path(env).exists():
        return env
    for p in _SEARCH:
        if Path(p).exists():
            return p
    for p in sorted(glob.glob("/usr/lib/*/libngspice.so*")) + sorted(glob.glob("/usr/lib*/libngspice.so*")):
        return p
    found = ctypes.util.find_library("ngspice")
    return found


@dataclass(frozen=True, eq=False)
class SpiceResult:
    """What one ngspice run returned.

    Attributes:
        op: ``.op`` node voltages [V] by node name (``None`` without ``.op``).
        time: ``.tran`` time points [s] (``None`` without ``.tran``).
        tran: ``.tran`` node voltages [V] by node name, each shaped like ``time``.
        netlist_path: where the netlist that ran was written.
        wall_time: seconds spent in ngspice (load, analyses, result copy) [s].
        log: ngspice's output lines (stdout and stderr).
        stderr: the lines ngspice wrote to stderr (informational ``Note:`` / ``Warning:`` lines
            of a run that succeeded, which PySpice 1.5 itself would have raised on).
    """

    op: dict[str, float] | None
    time: np.ndarray | None
    tran: dict[str, np.ndarray] | None
    netlist_path: Path
    wall_time: float
    log: tuple[str, ...]
    stderr: tuple[str, ...] = ()


class _VersionFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "Unsupported Ngspice version" not in record.getMessage()


_LOCK = threading.RLock()
_SESSION = None


def _shared_class():
    """A PySpice ``NgSpiceShared`` subclass that collects output instead of raising on it."""
    if not os.environ.get("NGSPICE_LIBRARY_PATH"):
        lib = find_libngspice()
        if lib is None:
            raise NgspiceNotFound(f"the ngspice shared library (libngspice.so.0) was not found; {INSTALL_HINT}")
        os.environ["NGSPICE_LIBRARY_PATH"] = lib
    try:
        from PySpice.Spice.NgSpice import Shared
    except ImportError as e:  # pragma: no cover - PySpice is a core dependency
        raise NgspiceNotFound(f"PySpice is not installed ({e}); pip install 'PySpice>=1.5'") from e
    logging.getLogger("PySpice").addFilter(_VersionFilter())
    for name in ("PySpice.Spice.NgSpice.Shared", "PySpice.Spice.NgSpice.Shared.NgSpiceShared"):
        logging.getLogger(name).addFilter(_VersionFilter())
    Shared.NgSpiceShared.LIBRARY_PATH = os.environ["NGSPICE_LIBRARY_PATH"]
    ffi = Shared.ffi

    class _Shared(Shared.NgSpiceShared):
        @staticmethod
        def _send_char(message_c, ngspice_id, user_data):
            self = ffi.from_handle(user_data)
            message = Shared.ffi_string_utf8(message_c)
            prefix, _, content = message.partition(" ")
            self._lines.append((prefix, content))
            return 0

        def exec_command(self, command, join_lines=True):
            lines = self.command(command)
            return "\n".join(lines) if join_lines else lines

        def command(self, command: str) -> list[str]:
            """Run one ngspice command; its output lines (nothing is raised for output)."""
            if not hasattr(self, "_lines"):
                self._lines = []
            self._number_of_exec_calls += 1
            if self._number_of_exec_calls > 500:
                self._ngspice_shared.ngSpice_Command(ffi.NULL)  # free the command history
                self._number_of_exec_calls = 0
            self._lines = []
            rc = self._ngspice_shared.ngSpice_Command(command.encode("ascii"))
            out = [c for _, c in self._lines]
            if rc:
                out.append(f"error: ngSpice_Command({command!r}) returned {rc}")
            return out

        @staticmethod
        def _background_thread_running(is_exited, ngspice_id, user_data):
            # ngspice calls this with false when its background thread starts, true when it ends
            # (PySpice's own callback returns None, which cffi reports on every call).
            self = ffi.from_handle(user_data)
            self._bg_events.append(bool(is_exited))
            return 0

        def __init__(self, *args, **kwargs):
            self._lines = []
            self._bg_events = []
            super().__init__(*args, **kwargs)

    return _Shared, ffi


def _scratch_path() -> Path:
    """This process's scratch netlist (removed at exit)."""
    path = Path(tempfile.gettempdir()) / f"analogeq_spice_{os.getpid()}.cir"
    if path not in _SCRATCH:
        _SCRATCH.add(path)
        atexit.register(path.unlink, missing_ok=True)
    return path


_SCRATCH: set[Path] = set()


class Ngspice:
    """The process's ngspice session. Use :func:`session` to get it."""

    def __init__(self):
        cls, self._ffi = _shared_class()
        try:
            self._ng = cls(ngspice_id=0, send_data=False)
        except OSError as e:
            raise NgspiceNotFound(f"cannot load {os.environ.get('NGSPICE_LIBRARY_PATH')}: {e}; {INSTALL_HINT}") from e
        self.version = self._ng._ngspice_version
        self.library = os.environ["NGSPICE_LIBRARY_PATH"]
        self.runs = 0
        self.last_log: list[str] = []

    def run(self, netlist: Netlist, path: str | os.PathLike | None = None,
            timeout: float | None = None) -> SpiceResult:
        """Write ``netlist`` to ``path``, run its analyses and return the node voltages [V].

        Without ``path`` the netlist goes to a per-process scratch file in the temp directory
        (overwritten by the next run, so repeated runs leave nothing behind); a netlist that fails
        is then kept under a unique name. ``timeout`` is the wall-clock limit [s] of the analyses
        (default: the enclosing :func:`time_limit`, else :func:`default_timeout`). Raises
        :class:`SpiceConvergenceError`, :class:`SpiceTimeout` or :class:`SpiceError` naming the
        netlist's path.
        """
        if timeout is None:
            timeout = _DEFAULT_LIMIT[0] if _DEFAULT_LIMIT[0] is not None else default_timeout(netlist)
        if not (isinstance(timeout, (int, float)) and 0 < timeout < float("inf")):
            raise ValueError(f"timeout must be a finite number of seconds > 0; got {timeout!r}")
        scratch = path is None
        if scratch:
            path = _scratch_path()
        path = netlist.write(path)
        try:
            return self._run(netlist, path, float(timeout))
        except SpiceError as e:
            if not scratch:
                raise
            fd, kept = tempfile.mkstemp(prefix="analogeq_failed_", suffix=".cir")
            os.close(fd)
            os.replace(path, kept)
            raise type(e)(str(e).replace(str(path), kept)) from None

    def _analyses(self, path: Path, timeout: float) -> list[str]:
        """Run the loaded circuit's analyses in ngspice's background thread, polling it; past
        ``timeout`` seconds halt it and raise :class:`SpiceTimeout`. Returns the output lines."""
        ng = self._ng
        ng._lines = []
        n0 = len(ng._bg_events)
        t0 = time.perf_counter()
        rc = ng._ngspice_shared.ngSpice_Command(b"bg_run")
        if rc:
            return [c for _, c in ng._lines] + [f"error: ngSpice_Command('bg_run') returned {rc}"]

        def ended() -> bool:  # the thread reports its end through the callback (polling
            return True in ng._bg_events[n0:]  # ngSpice_running() races with its start)

        delay = 0.0005
        while not ended():
            if time.perf_counter() - t0 > timeout:
                ng._ngspice_shared.ngSpice_Command(b"bg_halt")
                for _ in range(2000):  # the halt is honoured at the next time step
                    if ended():
                        break
                    time.sleep(0.005)
                raise SpiceTimeout(f"ngspice exceeded its time limit of {timeout:.4g} s on the netlist "
                                   f"{path} and was stopped (a smaller transient, a larger max_step or "
                                   "a larger --timeout / time_limit() helps)")
            time.sleep(delay)
            delay = min(2 * delay, 0.02)
        return [c for _, c in ng._lines]

    def _run(self, netlist: Netlist, path: Path, timeout: float) -> SpiceResult:
        with _LOCK:
            t0 = time.perf_counter()
            ng = self._ng
            log: list[str] = []
            stderr: list[str] = []
            self.last_log = log
            try:
                log += ng.command("destroy all")
                lines = [ln for ln in netlist.text.splitlines() if ln.strip()] + [""]
                keep = [self._ffi.new("char[]", ln.encode("utf8")) for ln in lines] + [self._ffi.NULL]
                ng._lines = []
                rc = ng._ngspice_shared.ngSpice_Circ(self._ffi.new("char *[]", keep))
                load = [c for _, c in ng._lines]
                stderr += [c for p, c in ng._lines if p == "stderr"]
                log += load
                errors = [ln for ln in load if _ERROR.search(ln) and not _BENIGN.match(ln)]
                if rc or errors:
                    raise SpiceError(f"ngspice rejected the netlist {path}: "
                                     f"{'; '.join(errors[:3]) or f'ngSpice_Circ returned {rc}'}")
                out = self._analyses(path, timeout)
                stderr += [c for p, c in ng._lines if p == "stderr"]
                log += out
                errors = [ln for ln in out if _ERROR.search(ln) and not _BENIGN.match(ln)]
                plots = ng.plot_names
                op = self._vectors(self._latest(plots, "op"))
                tr = self._vectors(self._latest(plots, "tran"))
                missing = [a for a, r in (("op", op), ("tran", tr)) if a in netlist.analyses and r is None]
                if errors or missing:
                    kind = (SpiceConvergenceError if missing or any(_CONVERGENCE.search(e) for e in errors)
                            else SpiceError)
                    what = "did not converge" if kind is SpiceConvergenceError else "failed"
                    raise kind(f"ngspice {what} on the netlist {path}"
                               + (f" (no .{', .'.join(missing)} result)" if missing else "")
                               + (f": {'; '.join(e.strip() for e in errors[-3:])}" if errors else "")
                               + "; rerun it with `ngspice -b <netlist>` to inspect")
            finally:
                ng.command("destroy all")
                ng.command("remcirc")
                self.runs += 1
            wall = time.perf_counter() - t0
        op_v = None if op is None else {k: float(v[0]) for k, v in op.items()}
        t = None if tr is None else tr.pop("time")
        return SpiceResult(op=op_v, time=t, tran=tr, netlist_path=path, wall_time=wall, log=tuple(log),
                           stderr=tuple(stderr))

    @staticmethod
    def _latest(plots, kind):
        names = [p for p in plots if re.fullmatch(kind + r"\d+", p)]
        return max(names, key=lambda p: int(p[len(kind):])) if names else None

    def _vectors(self, plot):
        if plot is None:
            return None
        ng, ffi = self._ng, self._ffi
        arr = ng._ngspice_shared.ngSpice_AllVecs(plot.encode("utf8"))
        out, i = {}, 0
        while arr[i] != ffi.NULL:
            name = ffi.string(arr[i]).decode("utf8")
            i += 1
            info = ng._ngspice_shared.ngGet_Vec_Info(f"{plot}.{name}".encode("utf8"))
            if info == ffi.NULL or info.v_realdata == ffi.NULL:
                continue
            data = np.frombuffer(ffi.buffer(info.v_realdata, info.v_length * 8), np.float64).copy()
            key = name.lower()
            if key.startswith("v(") and key.endswith(")"):
                key = key[2:-1]
            out[key] = data
        return out


def session() -> Ngspice:
    """The process-wide :class:`Ngspice` session (started on first use). Raises
    :class:`NgspiceNotFound` with install instructions when ngspice is missing."""
    global _SESSION
    with _LOCK:
        if _SESSION is None:
            _SESSION = Ngspice()
        return _SESSION


def available() -> bool:
    """Whether ngspice can be run here (the shared library loads)."""
    try:
        session()
    except NgspiceNotFound:
        return False
    return True


def run_netlist(netlist: Netlist, path: str | os.PathLike | None = None,
                timeout: float | None = None) -> SpiceResult:
    """Run ``netlist`` in the process's ngspice session with a wall-clock limit ``timeout`` [s]
    (see :meth:`Ngspice.run`)."""
    return session().run(netlist, path, timeout)
