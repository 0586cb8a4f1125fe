"""Wire resistance of one crossbar tile (IR drop): the tile's resistive network, solved exactly.

Orientation (the forward read of :class:`analogeq.hardware.tile.Tile`): column ``j`` is a *drive*
line driven at ``u_j`` [V]; row ``i`` is a *sense* line held at the virtual ground of a
transimpedance amplifier. (DESIGN.md section 8 says "rows carry the inputs": that is this network
with rows and columns named the other way round.) One conductance array ``g`` [S], shape
``(rows, cols)``, and its wires:

* drive wire of column ``j``: an ideal source ``u_j`` behind the driver resistance ``r_drive``
  feeds node ``D[0, j]``; consecutive nodes ``D[i, j] -- D[i+1, j]`` are joined by one wire
  segment ``r_segment``;
* sense wire of row ``i``: nodes ``S[i, j]`` joined by ``r_segment``; its end ``j = cols - 1``
  reaches the amplifier's virtual ground (0 V) through ``r_sense``; the row's output current is
  ``I_i = S[i, cols-1] / r_sense``, which by Kirchhoff's current law is the sum of its devices'
  currents (the form used here, valid also for ``r_sense = 0``);
* device ``(i, j)``: ``g_ij`` between ``D[i, j]`` and ``S[i, j]``; the voltage across it,
  ``V_ij = D_ij - S_ij``, is what a physical update senses.

A differential pair is two such arrays, ``G+`` and ``G-``, each on its own drive and sense wires
with its own drivers, both driven at the same ``u`` (the read subtracts the two sense currents):
:func:`pair_transfer`. Both arrays therefore see the same wire resistances but their own IR drop.

Formulation. With ``I_ij`` the device currents, the drive wire drops ``u_j - D[i, j] =
sum_k R_D[i, k] I_kj`` with the path resistance ``R_D[i, k] = r_drive + r_segment min(i, k)``
(the resistance the paths from the source to nodes ``i`` and ``k`` share), and the sense wire
rises ``S[i, j] = sum_k R_S[j, k] I_ik`` with ``R_S[j, k] = r_sense + r_segment min(c-1-j, c-1-k)``.
The devices close the system,

    I + g * (R_D I + I R_S) = g * u                          (1)

(``*`` elementwise) -- the cumulative-sum form of CrossSim's parasitic solver
(``simulator/circuits/array_simulator.py``, ``mvm_parasitics``; Xiao et al., "Analysis and
mitigation of parasitic resistance effects for analog in-memory neural network acceleration",
Semicond. Sci. Technol. 36, 114004 (2021)), and the nodal system of A. Chen, "A comprehensive
crossbar array model with solutions for line resistance and nonlinear device characteristics",
IEEE Trans. Electron Devices 60, 1318 (2013) and of *badcrossbar* (Joksas & Mehonic, SoftwareX
12, 100617 (2020)) written in currents. Resistances enter only multiplied, so any of them may be
0 (a fixed drive node, a node at the virtual ground, an ideal wire): with all three 0, (1) is
``I = g u`` and :func:`transfer` returns ``g`` bit for bit. The system is linear for fixed ``g``:
the sense currents are ``A(g) u`` with the transfer matrix ``A`` [S] (:func:`transfer`), so one
solve per conductance draw makes every later read an exact matvec.

Solvers (``method``):

* ``"relax"``: block (line) Gauss-Seidel, ``sweeps`` sweeps. Given the sense voltages, each drive
  wire is a ladder network solved exactly by one backward (Norton reduction) and one forward pass
  -- the Thomas algorithm of its tridiagonal nodal matrix, written with ``1/(1 + r Y)`` factors so
  that ``r = 0`` is exact; given the drive voltages, each sense wire likewise. Error bound: with
  ``q_D`` the largest drive voltage when every sense node is at 1 V and the sources at 0 (the
  infinity norm of the nonnegative map sense -> drive errors, by the maximum principle), ``q_S``
  the same for the sense wires and ``q = q_D q_S`` (:func:`contraction`), the sense-voltage error
  after ``k`` sweeps from a start ``S^0`` is

      ||S^k - S*||_inf <= q^k / (1 - q) ||S^1 - S^0||_inf,
      ||D^k - D*||_inf <= q_D q^(k-1) / (1 - q) ||S^1 - S^0||_inf,
      |I_i^k - I_i*| <= (sum_j g_ij) (q_D + q) q^(k-1) / (1 - q) ||S^1 - S^0||_inf.

  A priori (:func:`contraction_bound`), ``q_D <= a_D = max_ij sum_k R_D[i, k] g_kj <= g_max
  (rows r_drive + r_segment rows (rows - 1) / 2)`` and ``q_S <= a_S`` likewise with ``cols`` and
  ``r_sense``: with ``g r << 1`` the sweeps contract fast. Measured with 2.5 Ohm segments,
  100 Ohm drivers and 50 Ohm sense resistors, devices uniform in [1 uS, g_hi]: 32 x 32 tile
  ``q = 5e-4`` (g_hi = 10 uS), ``0.033`` (100 uS); 256 x 256 tile ``q = 0.16`` (10 uS), ``0.86``
  (100 uS). Differentiated through the sweeps (the derivative of the approximation).
* ``"exact"`` (default): the same sweeps, warm-started and Chebyshev-accelerated (the sweep's
  error map is similar to a symmetric positive semi-definite matrix with spectrum in ``[0, q]``;
  :func:`_relax_to_tolerance`), until the a-posteriori bound ``q / (1 - q) ||T(S) - S||_inf`` of
  the last sweep ``T(S)`` is below ``rtol`` times the sense-wire IR drop, inside
  ``jax.lax.custom_linear_solve`` on (1): derivatives are the adjoint solve of (1) (through the
  push-through identity ``(1 + K g)^-1 = 1 - K (1 + g K)^-1 g``), not an unrolled loop. Any tile
  size; ``O(rows cols)`` per sweep; about ``log(rtol) / log((sqrt(k) - 1) / (sqrt(k) + 1))``
  sweeps, ``k = 1 / (1 - q)``.
* ``"dense"``: a direct LU solve of (1) as a ``(rows cols)^2`` matrix, for small tiles (at most
  :data:`DENSE_LIMIT` devices); the reference the others are tested against besides the nodal
  solve of the tests.

Everything is pure, jit/vmap-able and differentiable w.r.t. ``g`` and the resistances
(resistances are traced numbers: whether IR drop is modelled at all is the caller's static
choice). The network is quasi-static on the neuron time scale (wire RC ~ fs-ps; DESIGN section 8).
"""

from __future__ import annotations

import functools

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jaxtyping import Array

METHODS = ("exact", "relax", "dense")
DEFAULT_SWEEPS = 4
"""Sweeps of ``method="relax"``: the sense-voltage error is then at most ``q^4 / (1 - q)`` times
the first sweep's correction (the IR drop from an ideal start), e.g. ``1e-13`` for ``q = 5e-4``
and ``7e-4`` for ``q = 0.16`` (module docstring)."""
DENSE_LIMIT = 4096
"""Most devices (``rows cols``) ``method="dense"`` accepts: its matrix has ``(rows cols)^2``
entries (134 MB in float64 at the limit)."""
MAX_SWEEPS = 10_000
"""Cap on the sweeps of ``method="exact"`` (reached only with ``q`` within 3e-3 of 1)."""


class Wires(eqx.Module):
    """Wire resistances of a tile [Ohm] (each a number >= 0, traced under jit).

    Attributes:
        r_segment: one wire segment between neighbouring cells, on drive and sense wires [Ohm].
        r_drive: output resistance of a column's driver, in series with its wire [Ohm].
        r_sense: resistance from a row's last cell to its amplifier's virtual ground [Ohm].
    """

    r_segment: Array | float
    r_drive: Array | float = 0.0
    r_sense: Array | float = 0.0

    def __check_init__(self):
        for name in ("r_segment", "r_drive", "r_sense"):
            v = getattr(self, name)
            if isinstance(v, jax.core.Tracer):
                continue  # a traced resistance is checked where it was concrete
            arr = np.asarray(v)
            if arr.ndim != 0 or not np.issubdtype(arr.dtype, np.number) or not np.isfinite(arr) or arr < 0:
                raise ValueError(f"Wires.{name} must be a finite number >= 0 [Ohm]; got {v!r}")


# ----------------------------------------------------------------- the network's pieces
def _check(g, name="g") -> Array:
    g = jnp.asarray(g)
    if g.ndim != 2:
        raise ValueError(f"{name} must be a (rows, cols) conductance array [S]; got shape {g.shape}")
    if not jnp.issubdtype(g.dtype, jnp.floating):
        g = g.astype(jnp.result_type(float))
    return g


def _method(method: str) -> str:
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}; got {method!r}")
    return method


def _r(wires: Wires, dtype):
    return (jnp.asarray(wires.r_segment, dtype), jnp.asarray(wires.r_drive, dtype),
            jnp.asarray(wires.r_sense, dtype))


def _to_sense(x: Array) -> Array:
    """``(..., rows, cols)`` -> the sense lines' frame ``(..., cols, rows)``, line position 0 at
    the amplifier end (``j = cols - 1``)."""
    return jnp.flip(jnp.swapaxes(x, -1, -2), -2)


def _from_sense(y: Array) -> Array:
    return jnp.swapaxes(jnp.flip(y, -2), -1, -2)


def _path_drop(i: Array, r_end, r_seg) -> Array:
    """``sum_k R[p, k] i_k`` along axis -2 with ``R[p, k] = r_end + r_seg min(p, k)``: the voltage
    drop from a line's source end to each node when current ``i_k`` [A] leaves node ``k`` [V].
    (``sum_k min(p, k) i_k = sum_{m=1..p} sum_{k>=m} i_k``: cumulative sums of tail sums.)"""
    tail = lax.cumsum(i, axis=i.ndim - 2, reverse=True)
    inner = jnp.cumsum(tail, axis=-2) - tail[..., :1, :]
    return r_end * tail[..., :1, :] + r_seg * inner


def _drops(i: Array, wires: Wires) -> tuple[Array, Array]:
    """Drive-wire drop ``u - D = R_D I`` and sense-wire rise ``S = I R_S`` [V] for device currents
    ``i`` [A] (shape ``(..., rows, cols)``)."""
    r_seg, r_drv, r_sns = _r(wires, i.dtype)
    return _path_drop(i, r_drv, r_seg), _from_sense(_path_drop(_to_sense(i), r_sns, r_seg))


def _recurrence(a: Array, b: Array, reverse: bool) -> Array:
    """``x_p = a_p x_(p-1) + b_p`` along axis -2 (``x_(p+1)`` with ``reverse``), ``x`` = 0 before
    the first element; ``a`` shape ``(n, lines)``, ``b`` shape ``(..., n, lines)``. A sequential scan
    over the ``n`` cells of a line, vectorized over lines and right sides: one pass over ``b``
    (a parallel prefix scan costs ``log2 n`` passes, which dominate for many right sides)."""
    def step(x, ab):
        x = ab[0] * x + ab[1]
        return x, x

    bt = jnp.moveaxis(b, -2, 0)
    _, xs = lax.scan(step, jnp.zeros_like(bt[0]), (a, bt), reverse=reverse)
    return jnp.moveaxis(xs, 0, -2)


class _Ladder(eqx.Module):
    """One family of wires (every drive wire, or every sense wire in :func:`_to_sense`'s frame) as
    ladder networks, factored once per conductance draw: ``y[p]`` [S] is the admittance of the
    devices and wire beyond node ``p`` seen from node ``p``; ``f[p] = 1 / (1 + r_p y[p])`` with
    ``r_0 = r_end`` (source end) and ``r_p = r_seg``."""

    g: Array
    y: Array
    f: Array
    r_end: Array
    r_seg: Array

    @staticmethod
    def factor(g: Array, r_end, r_seg) -> _Ladder:
        r = jnp.full(g.shape[0], r_seg, g.dtype).at[0].set(r_end)

        def step(beyond, x):  # beyond: admittance of node p+1's subtree through its segment
            gp, rp = x
            y = gp + beyond
            f = 1.0 / (1.0 + rp * y)
            return y * f, (y, f)

        _, (y, f) = lax.scan(step, jnp.zeros(g.shape[1], g.dtype), (g, r), reverse=True)
        return _Ladder(g, y, f, jnp.asarray(r_end, g.dtype), jnp.asarray(r_seg, g.dtype))

    def solve(self, far: Array, inject: Array | float = 0.0) -> Array:
        """Node voltages [V] of every line (source at 0 V) when device ``p`` connects node ``p``
        through ``g[p]`` to a fixed potential ``far[p]`` [V] and a current ``inject[p]`` [A] enters
        node ``p`` (shape ``(..., n, lines)``): Norton reduction from the far end, then the
        voltages from the source (the Thomas algorithm of the line's tridiagonal nodal matrix)."""
        h = self.g * far + inject  # Norton current of node p's own branch
        a_back = jnp.concatenate([self.f[1:], jnp.zeros_like(self.f[:1])], 0)
        c = _recurrence(a_back, h, reverse=True)  # c_p = h_p + f_(p+1) c_(p+1)
        b = self.f * self.r_seg * c
        b = b.at[..., 0, :].set(self.f[0] * self.r_end * c[..., 0, :])
        return _recurrence(self.f.at[0].set(0.0), b, reverse=False)  # V_p = f_p (V_(p-1) + r_p c_p)


class _Tile(eqx.Module):
    """Both wire families of one tile, factored."""

    g: Array
    drive: _Ladder
    sense: _Ladder

    @staticmethod
    def factor(g: Array, wires: Wires) -> _Tile:
        r_seg, r_drv, r_sns = _r(wires, g.dtype)
        return _Tile(g, _Ladder.factor(g, r_drv, r_seg), _Ladder.factor(_to_sense(g), r_sns, r_seg))

    def sweep(self, s: Array, b: Array) -> tuple[Array, Array]:
        """One line Gauss-Seidel sweep of (1) with right side ``b`` = ``g u`` [A] (sources moved
        into parallel current sources, drive sources at 0 V): drive wires given the sense
        voltages ``s``, then sense wires given the new drive voltages. Returns ``(D - u, S)`` [V]."""
        d = self.drive.solve(s, -b)
        s = _from_sense(self.sense.solve(_to_sense(d), _to_sense(b)))
        return d, s

    def contraction(self) -> tuple[Array, Array]:
        one = jnp.ones_like(self.g)
        return jnp.max(self.drive.solve(one)), jnp.max(self.sense.solve(_to_sense(one)))


# ----------------------------------------------------------------- solvers of (1)
def _relax(tile: _Tile, b: Array, sweeps: int, init) -> tuple[Array, Array]:
    s = jnp.zeros_like(b) if init is None else jnp.broadcast_to(jnp.asarray(init, b.dtype), b.shape)
    d, s = tile.sweep(s, b)
    # a fixed trip count lowers to a scan: reverse-mode differentiable, compiled once per sweep body
    return lax.fori_loop(1, sweeps, lambda _, ds: tile.sweep(ds[1], b), (d, s))


def _relax_to_tolerance(tile: _Tile, b: Array, init, rtol, max_sweeps: int) -> tuple[Array, Array]:
    """Line relaxation with Chebyshev acceleration, to a proven tolerance. The sweep ``S -> T(S)``
    is affine with error map ``M = M_S M_D``, which is similar to a symmetric positive
    semi-definite matrix (``X^(1/2) M X^(-1/2)`` with ``X`` the sense wires' nodal matrix), so its
    eigenvalues lie in ``[0, q]``: the Chebyshev semi-iteration for ``(1 - M) S = c`` on that
    interval (Saad, Iterative Methods for Sparse Linear Systems, 2nd ed., SIAM 2003, Alg. 12.1)
    converges at ``(sqrt(k) - 1) / (sqrt(k) + 1)`` per sweep, ``k = 1 / (1 - q)``, instead of
    ``q``. Stops when the result ``T(S)``'s error bound ``q / (1 - q) ||T(S) - S||_inf`` is at most
    ``rtol`` times the sense-wire IR drop ``||T(S^0)||_inf``. Returns ``(D - u, S)`` [V] of the
    last sweep."""
    qd, qs = tile.contraction()
    q = qd * qs
    factor = jnp.where(q < 1, q / (1 - q), jnp.inf)
    qe = jnp.clip(q, 1e-3, 1 - 1e-9)  # a wider interval than [0, q] is still valid
    theta, delta = 1 - qe / 2, qe / 2  # centre and half width of the spectrum of 1 - M
    sigma = theta / delta
    x = jnp.zeros_like(b) if init is None else jnp.broadcast_to(jnp.asarray(init, b.dtype), b.shape)
    d1, s1 = tile.sweep(x, b)
    scale = jnp.max(jnp.abs(s1))
    r = s1 - x

    def cond(state):
        k, *_, rn = state
        return (k < max_sweeps) & (factor * rn > rtol * scale)

    def body(state):
        k, x, step, rho, r, _, _, _ = state
        x = x + step
        d_t, s_t = tile.sweep(x, b)
        r = s_t - x  # residual of (1 - M) x = c
        rho_new = 1 / (2 * sigma - rho)
        step = rho_new * rho * step + (2 * rho_new / delta) * r
        return k + 1, x, step, rho_new, r, d_t, s_t, jnp.max(jnp.abs(r))

    state = (1, x, r / theta, 1 / sigma, r, d1, s1, jnp.max(jnp.abs(r)))
    state = lax.while_loop(cond, body, state)
    return state[5], state[6]


def _default_rtol(dtype) -> float:
    return float(max(1e-14, 8 * jnp.finfo(dtype).eps))


def _exact_currents(g: Array, b: Array, wires: Wires, init, rtol, max_sweeps) -> Array:
    """Device currents [A] solving (1) with right side ``b``, to ``rtol``; derivatives by the
    adjoint solve (``lax.custom_linear_solve``)."""
    tile = _Tile.factor(g, wires)

    def matvec(i):
        drive, sense = _drops(i, wires)
        return i + g * (drive + sense)

    def solve(_, rhs, start=None):
        d, s = _relax_to_tolerance(tile, rhs, start, rtol, max_sweeps)
        return g * (d - s) + rhs

    def transpose_solve(_, rhs):
        # (1 + K g)^-1 = 1 - K (1 + g K)^-1 g  (push-through identity; K = R_D (.) + (.) R_S)
        drive, sense = _drops(solve(None, g * rhs), wires)
        return rhs - (drive + sense)

    return lax.custom_linear_solve(matvec, b, lambda mv, rhs: solve(mv, rhs, init), transpose_solve)


def _dense_matrix(g: Array, wires: Wires) -> Array:
    """The matrix of (1), ``1 + diag(g) (R_D (x) 1 + 1 (x) R_S)``, row-major device order."""
    rows, cols = g.shape
    r_seg, r_drv, r_sns = _r(wires, g.dtype)
    i = jnp.arange(rows)
    p = jnp.arange(cols)[::-1]
    r_d = r_drv + r_seg * jnp.minimum(i[:, None], i[None, :]).astype(g.dtype)
    r_s = r_sns + r_seg * jnp.minimum(p[:, None], p[None, :]).astype(g.dtype)
    k = jnp.kron(r_d, jnp.eye(cols, dtype=g.dtype)) + jnp.kron(jnp.eye(rows, dtype=g.dtype), r_s)
    return jnp.eye(rows * cols, dtype=g.dtype) + g.reshape(-1, 1) * k


def _traced(wires: Wires, dtype) -> Wires:
    """``wires`` with array leaves, so one compiled program serves every resistance value."""
    return Wires(*_r(wires, dtype))


@functools.partial(jax.jit, static_argnames=("method", "sweeps", "rtol"))
def _currents(g, b, wires, method, sweeps, init, rtol):
    """Device currents [A] for right side ``b = g u`` [A] (``(..., rows, cols)``), with the relax
    method's node voltages when it computed them."""
    if method == "dense":
        rows, cols = g.shape
        if rows * cols > DENSE_LIMIT:
            raise ValueError(f"method='dense' handles at most {DENSE_LIMIT} devices; the tile has "
                             f"{rows} x {cols}; use method='exact'")
        flat = b.reshape(-1, rows * cols).T
        return jnp.linalg.solve(_dense_matrix(g, wires), flat).T.reshape(b.shape), None
    if method == "relax":
        if not (isinstance(sweeps, int) and sweeps >= 1):
            raise ValueError(f"sweeps must be an integer >= 1; got {sweeps!r}")
        d, s = _relax(_Tile.factor(g, wires), b, sweeps, init)
        return g * (d - s) + b, (d, s)
    rtol = _default_rtol(g.dtype) if rtol is None else rtol
    return _exact_currents(g, b, wires, init, rtol, MAX_SWEEPS), None


# ----------------------------------------------------------------- public functions
def device_currents(g, u, wires: Wires, *, method: str = "exact", sweeps: int = DEFAULT_SWEEPS,
                    init=None, rtol: float | None = None) -> Array:
    """Current through each device [A], drive node to sense node, shape ``(..., rows, cols)``.

    Args:
        g: device conductances [S], shape ``(rows, cols)``.
        u: drive voltages [V], shape ``(..., cols)`` (leading dims are batched).
        wires: the wire resistances (:class:`Wires`).
        method: ``"exact"``, ``"relax"`` or ``"dense"`` (module docstring).
        sweeps: line Gauss-Seidel sweeps of ``"relax"``.
        init: starting sense-node voltages [V] (broadcast to ``(..., rows, cols)``; default 0, the
            ideal read) -- a warm start, e.g. the last solve's ``S``.
        rtol: tolerance of ``"exact"`` relative to the sense-wire IR drop (default
            ``max(1e-14, 8 eps)`` of the dtype).
    """
    g = _check(g)
    u = jnp.asarray(u, g.dtype)
    if u.ndim < 1 or u.shape[-1] != g.shape[1]:
        raise ValueError(f"u must have shape (..., {g.shape[1]}) (one drive voltage per column); got {u.shape}")
    return _currents(g, g * u[..., None, :], _traced(wires, g.dtype), _method(method), sweeps, init, rtol)[0]


def node_voltages(g, u, wires: Wires, *, method: str = "exact", sweeps: int = DEFAULT_SWEEPS,
                  init=None, rtol: float | None = None) -> tuple[Array, Array]:
    """Wire-node voltages ``(D, S)`` [V], each ``(..., rows, cols)``: ``D[i, j]`` on column ``j``'s
    drive wire at row ``i``, ``S[i, j]`` on row ``i``'s sense wire at column ``j`` (arguments as
    :func:`device_currents`)."""
    g = _check(g)
    u = jnp.asarray(u, g.dtype)
    if u.ndim < 1 or u.shape[-1] != g.shape[1]:
        raise ValueError(f"u must have shape (..., {g.shape[1]}) (one drive voltage per column); got {u.shape}")
    i, nodes = _currents(g, g * u[..., None, :], _traced(wires, g.dtype), _method(method), sweeps, init, rtol)
    if nodes is not None:
        d, s = nodes
        return u[..., None, :] + d, s
    drive, sense = _drops(i, wires)
    return u[..., None, :] - drive, sense


def device_voltages(g, u, wires: Wires, **kwargs) -> Array:
    """Voltage across each device ``V_ij = D_ij - S_ij`` [V] (what a physical update senses),
    shape ``(..., rows, cols)``; ``u`` for every device with ideal wires (arguments as
    :func:`device_currents`)."""
    d, s = node_voltages(g, u, wires, **kwargs)
    return d - s


def sense_currents(g, u, wires: Wires, **kwargs) -> Array:
    """Current of each row into its amplifier's virtual ground [A], shape ``(..., rows)``:
    ``g @ u`` with ideal wires (arguments as :func:`device_currents`)."""
    return jnp.sum(device_currents(g, u, wires, **kwargs), -1)


def drive_currents(g, u, wires: Wires, **kwargs) -> Array:
    """Current each column's driver delivers [A], shape ``(..., cols)`` (arguments as
    :func:`device_currents`); its sum equals the sum of :func:`sense_currents`."""
    return jnp.sum(device_currents(g, u, wires, **kwargs), -2)


def transfer(g, wires: Wires, *, method: str = "exact", sweeps: int = DEFAULT_SWEEPS,
             rtol: float | None = None) -> Array:
    """The tile's transfer matrix ``A`` [S], shape ``(rows, cols)``: sense currents ``I = A u``
    for drive voltages ``u`` [V], exactly (the network is linear for fixed ``g``); ``A = g`` with
    ideal wires. Computed once per conductance draw, every read is then a matvec. Costs one solve
    of (1) per column (``cols`` right sides solved together)."""
    g = _check(g)
    cols = g.shape[1]
    b = g[None, :, :] * jnp.eye(cols, dtype=g.dtype)[:, None, :]  # right side of u = e_j, per j
    i, _ = _currents(g, b, _traced(wires, g.dtype), _method(method), sweeps, None, rtol)
    return jnp.sum(i, -1).T


def pair_transfer(g_pos, g_neg, wires: Wires, **kwargs) -> Array:
    """Transfer matrix [S] of a differential pair, ``A(G+) - A(G-)``: each array on its own wires
    and drivers at the same drive voltages, the two sense currents subtracted (arguments as
    :func:`transfer`)."""
    return transfer(g_pos, wires, **kwargs) - transfer(g_neg, wires, **kwargs)


def contraction(g, wires: Wires) -> tuple[Array, Array]:
    """``(q_D, q_S)`` (dimensionless, in ``[0, 1)``): the infinity norms of the maps from
    sense-voltage errors to drive-voltage errors and back in a line Gauss-Seidel sweep -- the
    largest drive voltage with every sense node at 1 V and the sources at 0, and the largest sense
    voltage with every drive node at 1 V. One sweep contracts by ``q = q_D q_S``."""
    return _Tile.factor(_check(g), wires).contraction()


def contraction_bound(g, wires: Wires) -> tuple[Array, Array]:
    """A priori bounds ``(a_D, a_S)`` on :func:`contraction`: ``a_D = max_ij sum_k R_D[i, k] g_kj``
    (the drive wire's drop if each device drew ``g`` x 1 V) ``<= g_max (rows r_drive +
    r_segment rows (rows - 1) / 2)``, and ``a_S`` likewise on the sense wires; each is also
    bounded by 1 (maximum principle)."""
    g = _check(g)
    drive, sense = _drops(g, wires)
    return jnp.minimum(jnp.max(drive), 1.0), jnp.minimum(jnp.max(sense), 1.0)
