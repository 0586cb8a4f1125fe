"""The IR-drop tile solve (analogeq.hardware.wires) against an independent nodal solve and ngspice.

The reference here builds the tile's full nodal conductance matrix (2 rows cols wire nodes plus
the sources and the virtual ground) with numpy, merges the nodes of 0 Ohm wires (union-find), and
solves Kirchhoff's current law directly: it shares no code with the module.
"""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from analogeq.hardware.wires import (
    Wires,
    contraction,
    contraction_bound,
    device_voltages,
    drive_currents,
    node_voltages,
    pair_transfer,
    sense_currents,
    transfer,
)

# float64 throughout (conftest switches it on for the session; this keeps the file standalone)
jax.config.update("jax_enable_x64", True)


# ----------------------------------------------------------------- independent reference
def nodal_reference(g, u, r_seg, r_drive, r_sense):
    """Node voltages ``(D, S)`` [V] of shape ``(batch, rows, cols)``, sense and drive currents
    [A], from a dense nodal solve of the resistor network; ``u`` shape ``(batch, cols)``."""
    g = np.asarray(g, np.float64)
    u = np.atleast_2d(np.asarray(u, np.float64))
    rows, cols = g.shape
    d = lambda i, j: i * cols + j
    s = lambda i, j: rows * cols + i * cols + j
    gnd, src = 2 * rows * cols, 2 * rows * cols + 1  # src + j: column j's ideal source
    n = src + cols
    parent = list(range(n))

    def find(a):
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    edges = []  # (a, b, resistance); r = 0 is a short

    for j in range(cols):
        edges.append((src + j, d(0, j), r_drive))
        edges += [(d(i, j), d(i + 1, j), r_seg) for i in range(rows - 1)]
    for i in range(rows):
        edges += [(s(i, j), s(i, j + 1), r_seg) for j in range(cols - 1)]
        edges.append((s(i, cols - 1), gnd, r_sense))
    for a, b, r in edges:
        if r == 0:
            parent[find(a)] = find(b)
    cond = [(a, b, 1.0 / r) for a, b, r in edges if r > 0]
    cond += [(d(i, j), s(i, j), g[i, j]) for i in range(rows) for j in range(cols) if g[i, j] > 0]
    reps = sorted({find(a) for a in range(n)})
    index = {r: k for k, r in enumerate(reps)}
    lap = np.zeros((len(reps), len(reps)))
    for a, b, y in cond:
        ia, ib = index[find(a)], index[find(b)]
        if ia != ib:
            lap[ia, ia] += y
            lap[ib, ib] += y
            lap[ia, ib] -= y
            lap[ib, ia] -= y
    fixed = {index[find(gnd)]: np.zeros(len(u))}
    for j in range(cols):
        fixed[index[find(src + j)]] = u[:, j]
    fixed_idx = np.array(sorted(fixed))
    free = np.array([k for k in range(len(reps)) if k not in fixed])
    v = np.zeros((len(u), len(reps)))
    v[:, fixed_idx] = np.stack([fixed[k] for k in fixed_idx], -1)
    if free.size:
        rhs = -v[:, fixed_idx] @ lap[np.ix_(free, fixed_idx)].T
        v[:, free] = np.linalg.solve(lap[np.ix_(free, free)], rhs.T).T
    node = np.array([index[find(a)] for a in range(n)])
    D = v[:, node[: rows * cols]].reshape(-1, rows, cols)
    S = v[:, node[rows * cols: 2 * rows * cols]].reshape(-1, rows, cols)
    dev = g * (D - S)
    sense = S[:, :, -1] / r_sense if r_sense > 0 else dev.sum(-1)  # Ohm's law where it can be used
    drive = (u - D[:, 0, :]) / r_drive if r_drive > 0 else dev.sum(-2)
    return D, S, sense, drive


def reference_transfer(g, r_seg, r_drive, r_sense):
    cols = np.shape(g)[1]
    return nodal_reference(g, np.eye(cols), r_seg, r_drive, r_sense)[2].T


def random_tile(shape, seed, g_lo=1e-6, g_hi=10e-6):
    return np.random.default_rng(seed).uniform(g_lo, g_hi, shape)


WIRES = [(2.5, 100.0, 50.0), (2.5, 0.0, 0.0), (0.0, 100.0, 50.0), (2.5, 0.0, 50.0), (2.5, 100.0, 0.0),
         (0.0, 0.0, 0.0), (40.0, 1000.0, 500.0)]
SHAPES = [(1, 7), (6, 1), (8, 5), (32, 32)]


def _rel(a, b):
    return float(np.max(np.abs(np.asarray(a) - np.asarray(b))) / np.max(np.abs(np.asarray(b))))


# ----------------------------------------------------------------- exact solve vs nodal solve
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("rs", WIRES)
def test_matches_nodal_solve(shape, rs):
    """Transfer matrix, node voltages and currents equal the dense nodal solve to 1e-9."""
    g = random_tile(shape, seed=shape[0] * 100 + shape[1], g_hi=100e-6)
    u = np.random.default_rng(1).uniform(-1, 1, (2, shape[1]))
    w = Wires(*rs)
    D_ref, S_ref, sense_ref, drive_ref = nodal_reference(g, u, *rs)
    a_ref = reference_transfer(g, *rs)
    methods = ("exact", "dense") if shape[0] * shape[1] <= 64 or rs == WIRES[0] else ("exact",)
    for method in methods:
        a = transfer(jnp.asarray(g), w, method=method)
        assert _rel(a, a_ref) < 1e-9, (method, _rel(a, a_ref))
        D, S = node_voltages(jnp.asarray(g), jnp.asarray(u), w, method=method)
        assert _rel(D, D_ref) < 1e-9 and float(np.max(np.abs(np.asarray(S) - S_ref))) < 1e-9 * np.max(np.abs(u))
        assert _rel(sense_currents(g, u, w, method=method), sense_ref) < 1e-9
        assert _rel(drive_currents(g, u, w, method=method), drive_ref) < 1e-9
        assert _rel(np.asarray(a) @ u.T, sense_ref.T) < 1e-9  # a read is a matvec with A


def test_absent_devices():
    """Devices at exactly 0 S (left out of a netlist), a whole empty column and row included."""
    g = random_tile((9, 7), 13, g_hi=100e-6) * (np.random.default_rng(11).uniform(size=(9, 7)) > 0.3)
    g[:, 2] = 0.0
    g[4, :] = 0.0
    u = np.random.default_rng(12).uniform(-1, 1, (2, 7))
    D_ref, S_ref, sense_ref, _ = nodal_reference(g, u, 2.5, 100.0, 50.0)
    for method in ("exact", "dense"):
        assert _rel(transfer(g, Wires(2.5, 100.0, 50.0), method=method), reference_transfer(g, 2.5, 100.0, 50.0)) < 1e-9
        D, S = node_voltages(g, u, Wires(2.5, 100.0, 50.0), method=method)
        assert _rel(D, D_ref) < 1e-9 and _rel(S, S_ref) < 1e-9
        assert _rel(sense_currents(g, u, Wires(2.5, 100.0, 50.0), method=method), sense_ref) < 1e-9


def test_ir_drop_is_visible_and_the_reference_can_fail():
    """The cases above are not ideal reads: at 2.5 Ohm / 100 Ohm / 50 Ohm a 32 x 32 tile of
    100 uS devices moves A by percents, far outside the 1e-9 tolerance."""
    g = random_tile((32, 32), 0, g_hi=100e-6)
    a_ref = reference_transfer(g, 2.5, 100.0, 50.0)
    assert _rel(g, a_ref) > 1e-2


def test_ideal_wires_are_the_ideal_read_exactly():
    g = jnp.asarray(random_tile((8, 5), 3))
    u = jnp.asarray(np.random.default_rng(2).uniform(-1, 1, 5))
    w = Wires(0.0, 0.0, 0.0)
    for method in ("exact", "relax", "dense"):
        a = transfer(g, w, method=method)
        assert bool(jnp.all(a == g)), method
        assert bool(jnp.all(a @ u == g @ u))
        assert bool(jnp.all(device_voltages(g, u, w, method=method) == u))


def test_differential_pair_transfer():
    gp, gn = random_tile((6, 4), 4), random_tile((6, 4), 5)
    w = Wires(2.5, 100.0, 50.0)
    ref = reference_transfer(gp, 2.5, 100.0, 50.0) - reference_transfer(gn, 2.5, 100.0, 50.0)
    assert _rel(pair_transfer(gp, gn, w), ref) < 1e-9


def test_currents_are_conserved():
    """Every driver's current reaches a virtual ground (nothing else is connected)."""
    g = random_tile((16, 12), 6, g_hi=100e-6)
    u = np.random.default_rng(3).uniform(-1, 1, (3, 12))
    w = Wires(2.5, 100.0, 50.0)
    for method in ("exact", "relax", "dense"):
        tot_s = np.asarray(sense_currents(g, u, w, method=method)).sum(-1)
        tot_d = np.asarray(drive_currents(g, u, w, method=method)).sum(-1)
        np.testing.assert_allclose(tot_s, tot_d, rtol=1e-12, atol=1e-20)
    _, _, s_ref, d_ref = nodal_reference(g, u, 2.5, 100.0, 50.0)  # the reference obeys it too
    np.testing.assert_allclose(s_ref.sum(-1), d_ref.sum(-1), rtol=1e-10)


# ----------------------------------------------------------------- relaxation and its bound
@pytest.mark.parametrize("shape,g_hi,rs", [((32, 32), 100e-6, (2.5, 100.0, 50.0)),
                                           ((64, 48), 100e-6, (10.0, 100.0, 50.0)),
                                           ((8, 5), 10e-6, (2.5, 100.0, 50.0))])
def test_relaxation_obeys_its_error_bound(shape, g_hi, rs):
    g = jnp.asarray(random_tile(shape, 7, g_hi=g_hi))
    u = jnp.asarray(np.random.default_rng(4).uniform(-1, 1, shape[1]))
    w = Wires(*rs)
    qd, qs = contraction(g, w)
    q = float(qd * qs)
    ad, as_ = contraction_bound(g, w)
    assert 0 < float(qd) <= float(ad) and 0 < float(qs) <= float(as_) and q < 1
    g_max = float(jnp.max(g))
    assert float(ad) <= g_max * (shape[0] * rs[1] + rs[0] * shape[0] * (shape[0] - 1) / 2) * (1 + 1e-12)
    D, S = node_voltages(g, u, w)
    I = sense_currents(g, u, w)
    _, S1 = node_voltages(g, u, w, method="relax", sweeps=1)
    first = float(jnp.max(jnp.abs(S1)))  # ||S^1 - S^0|| from S^0 = 0
    gsum = jnp.sum(g, -1)
    errors = []
    for k in range(1, 6):
        Dk, Sk = node_voltages(g, u, w, method="relax", sweeps=k)
        e_s = float(jnp.max(jnp.abs(Sk - S)))
        e_d = float(jnp.max(jnp.abs(Dk - D)))
        e_i = jnp.abs(sense_currents(g, u, w, method="relax", sweeps=k) - I)
        assert e_s <= q ** k / (1 - q) * first * (1 + 1e-9) + 1e-15, (k, e_s)
        assert e_d <= float(qd) * q ** (k - 1) / (1 - q) * first * (1 + 1e-9) + 1e-15, (k, e_d)
        assert bool(jnp.all(e_i <= gsum * (float(qd) + q) * q ** (k - 1) / (1 - q) * first * (1 + 1e-9) + 1e-20))
        errors.append(e_s)
    # the bound is not vacuous: the error does fall by about q per sweep while above rounding
    if q > 1e-3:
        assert errors[1] > 1e-3 * q * errors[0]


def test_warm_start_reaches_the_same_solution():
    g = jnp.asarray(random_tile((16, 16), 8, g_hi=100e-6))
    u = jnp.asarray(np.random.default_rng(5).uniform(-1, 1, 16))
    w = Wires(2.5, 100.0, 50.0)
    D, S = node_voltages(g, u, w)
    D2, S2 = node_voltages(g, 1.01 * u, w, init=S)
    np.testing.assert_allclose(D2, 1.01 * D, rtol=1e-12)
    np.testing.assert_allclose(S2, 1.01 * S, rtol=1e-12)
    _, S_warm = node_voltages(g, u, w, method="relax", sweeps=1, init=S)
    assert float(jnp.max(jnp.abs(S_warm - S))) < 1e-15


# ----------------------------------------------------------------- derivatives, jit, vmap
def test_gradients_match_finite_differences():
    g0 = jnp.asarray(random_tile((4, 3), 9, g_hi=1e-2))  # large g r so the derivative is not ~ identity
    wts = jnp.asarray(np.random.default_rng(6).normal(size=(4, 3)))

    def loss(g, method, r_seg=2.5):
        return jnp.sum(wts * transfer(g, Wires(r_seg, 10.0, 5.0), method=method, sweeps=40))

    def loss_ref(g):
        return float(np.sum(np.asarray(wts) * reference_transfer(np.asarray(g), 2.5, 10.0, 5.0)))

    h = 1e-7
    fd = np.zeros((4, 3))
    for i in range(4):
        for j in range(3):
            e = np.zeros((4, 3))
            e[i, j] = h
            fd[i, j] = (loss_ref(g0 + e) - loss_ref(g0 - e)) / (2 * h)
    dense = jax.grad(loss)(g0, "dense")
    assert _rel(dense, fd) < 1e-6
    for method in ("exact", "relax"):
        grad = jax.grad(loss)(g0, method)
        assert _rel(grad, dense) < 1e-9, method
        # forward mode too (exact: the custom linear solve's JVP)
        tangent = jnp.asarray(np.random.default_rng(7).normal(size=(4, 3)))
        jvp = jax.jvp(lambda g, m=method: loss(g, m), (g0,), (tangent,))[1]
        np.testing.assert_allclose(float(jvp), float(jnp.sum(dense * tangent)), rtol=1e-9)
    assert _rel(jax.grad(loss)(g0, "dense"), np.asarray(wts)) > 1e-2  # IR drop matters here
    dr = jax.grad(lambda r: loss(g0, "exact", r))(2.5)
    dr_ref = (loss_ref_r(g0, wts, 2.5 + 1e-4) - loss_ref_r(g0, wts, 2.5 - 1e-4)) / 2e-4
    np.testing.assert_allclose(float(dr), dr_ref, rtol=1e-6)


def loss_ref_r(g, wts, r_seg):
    return float(np.sum(np.asarray(wts) * reference_transfer(np.asarray(g), r_seg, 10.0, 5.0)))


def test_jit_and_vmap():
    gs = jnp.asarray(np.stack([random_tile((8, 6), s, g_hi=100e-6) for s in range(3)]))
    u = jnp.asarray(np.random.default_rng(8).uniform(-1, 1, (5, 6)))

    @jax.jit
    def f(g, r):
        w = Wires(r, 100.0, 50.0)
        return transfer(g, w), sense_currents(g, u, w), transfer(g, w, method="relax")

    a, i, ar = jax.vmap(f, in_axes=(0, None))(gs, 2.5)
    for k in range(3):
        a_ref = reference_transfer(np.asarray(gs[k]), 2.5, 100.0, 50.0)
        assert _rel(a[k], a_ref) < 1e-9
        assert _rel(i[k], np.asarray(u) @ a_ref.T) < 1e-9
        assert _rel(ar[k], a_ref) < 1e-6  # 4 sweeps at q ~ 1e-2
    r_batch = jax.vmap(lambda r: f(gs[0], r)[0])(jnp.array([0.0, 2.5]))
    assert _rel(r_batch[1], a[0]) < 1e-12 and _rel(r_batch[0], reference_transfer(np.asarray(gs[0]), 0, 100, 50)) < 1e-9


def test_float32():
    """A float32 tile (an accelerator's dtype) is solved to float32 rounding."""
    g = random_tile((32, 32), 12, g_hi=100e-6)
    w = Wires(2.5, 100.0, 50.0)
    ref = reference_transfer(g, 2.5, 100.0, 50.0)
    a = transfer(jnp.asarray(g, jnp.float32), w)
    assert a.dtype == jnp.float32 and _rel(a, ref) < 1e-5
    assert _rel(g, ref) > 1e-2  # far above the float32 tolerance


# ----------------------------------------------------------------- input checks
def test_bad_inputs_are_named():
    g = jnp.ones((3, 2)) * 1e-6
    with pytest.raises(ValueError, match="Wires.r_drive"):
        Wires(1.0, -1.0, 0.0)
    with pytest.raises(ValueError, match="Wires.r_segment"):
        Wires(float("nan"))
    with pytest.raises(ValueError, match="method"):
        transfer(g, Wires(1.0), method="cg")
    with pytest.raises(ValueError, match="rows, cols"):
        transfer(jnp.ones(3), Wires(1.0))
    with pytest.raises(ValueError, match="u must have shape"):
        sense_currents(g, jnp.ones(3), Wires(1.0))
    with pytest.raises(ValueError, match="sweeps"):
        transfer(g, Wires(1.0), method="relax", sweeps=0)
    with pytest.raises(ValueError, match="dense"):
        transfer(jnp.ones((80, 80)), Wires(1.0), method="dense")


# ----------------------------------------------------------------- ngspice
spice = pytest.mark.skipif(bool(os.environ.get("ANALOGEQ_SKIP_SPICE")), reason="ANALOGEQ_SKIP_SPICE is set")


@spice
@pytest.mark.parametrize("g_hi", [10e-6, 100e-6])
def test_ngspice_op_equals_the_tile_solve(g_hi):
    """32 x 32 tile, 2.5 Ohm segments, 100 Ohm drivers, 50 Ohm sense resistors, ECRAM-like
    devices in [1 uS, g_hi]: every node within 10 uV of ngspice, sense currents within 1e-9."""
    from analogeq.spice.wires import tile_op

    g = random_tile((32, 32), 10, g_hi=g_hi)
    u = np.random.default_rng(9).uniform(-0.5, 0.5, 32)
    w = Wires(2.5, 100.0, 50.0)
    op = tile_op(g, u, w)
    D, S = node_voltages(g, u, w)
    err = max(float(np.max(np.abs(op.drive_nodes - np.asarray(D)))),
              float(np.max(np.abs(op.sense_nodes - np.asarray(S)))))
    ir_drop = float(np.max(np.abs(np.asarray(device_voltages(g, u, w)) - u)))
    print(f"g <= {g_hi * 1e6:.0f} uS: max node error {err:.3g} V, max |V_ij - u_j| {ir_drop * 1e3:.3g} mV, "
          f"ngspice {op.wall_time:.2f} s")
    assert err < 10e-6
    assert ir_drop > 1e-3  # the wires matter in this tile
    I = np.asarray(sense_currents(g, u, w))
    np.testing.assert_allclose(op.sense_currents, I, rtol=1e-9, atol=1e-15)
    np.testing.assert_allclose(op.drive_currents, np.asarray(drive_currents(g, u, w)), rtol=1e-9, atol=1e-15)
    np.testing.assert_allclose(np.asarray(transfer(g, w)) @ u, op.sense_currents, rtol=1e-9, atol=1e-15)


@spice
def test_ngspice_with_zero_wire_resistances():
    """Shorts (0 Ohm) are written as 0 V sources; the all-zero tile is the ideal read."""
    from analogeq.spice.wires import tile_op

    g = random_tile((5, 4), 11, g_hi=100e-6)
    u = np.random.default_rng(10).uniform(-0.5, 0.5, 4)
    for rs in [(2.5, 0.0, 50.0), (0.0, 100.0, 0.0), (0.0, 0.0, 0.0)]:
        op = tile_op(g, u, Wires(*rs))
        D, S = node_voltages(g, u, Wires(*rs))
        assert float(np.max(np.abs(op.drive_nodes - np.asarray(D)))) < 1e-9
        assert float(np.max(np.abs(op.sense_nodes - np.asarray(S)))) < 1e-9
        np.testing.assert_allclose(op.sense_currents, np.asarray(sense_currents(g, u, Wires(*rs))), rtol=1e-9)
    np.testing.assert_allclose(op.sense_currents, g @ u, rtol=1e-12)
