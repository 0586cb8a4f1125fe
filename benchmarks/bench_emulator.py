#!/usr/bin/env python
"""CPU benchmark of the digital emulator: analogeq (JAX, jit) against plain PyTorch eager.

Two benchmarks, same process, same machine, float32, the leaky layered network
(``F_l = -s_l + W_{l-1} rho(s_{l-1}) + B_l rho(s_{l+1}) + b_l``, ``rho = tanh``):

1. ``relaxation``: the free phase, ``T1 = 60`` explicit-Euler steps ``s <- s + eps F(s)``
   (``eps = 0.5``) from ``s = 0``. analogeq: ``analogeq.free_phase`` under
   ``equinox.filter_jit``; torch: the same loop written here with batched matmuls under
   ``torch.no_grad``.
2. ``train_step``: one full AsymEP centered training step as ``analogeq train`` runs it
   (free phase T1 = 60, both nudged phases +-beta relaxed jointly for T2 = 20 steps with the
   AsymEP correction ``-(J v - J^T v)``, ``J`` at ``s*``, force-form gradient
   ``g = a^T dF/dtheta``, convergence gate, Adam). analogeq: the jit step from
   ``analogeq.training.make_train_step``; torch: the same algorithm with ``torch.func``
   (``jvp`` for ``J v`` -- or ``linearize`` with ``--torch-jvp linearize`` -- and a ``vjp``
   taken once at ``s*`` and reused for ``J^T v``), ``torch.autograd``
   for ``dF/dtheta`` and ``torch.optim.Adam``.

Both implementations start from the same weights (copied from the JAX model) and are checked
against each other before anything is timed (free states within 1e-4, gradient cosine above
0.999); the run aborts otherwise.

Usage::

    python benchmarks/bench_emulator.py --out benchmarks/results          # full (~minutes)
    python benchmarks/bench_emulator.py --quick --out /tmp/bench-smoke    # smoke test
"""

from __future__ import annotations

import argparse
import csv
import datetime as _dt
import json
import os
import platform
import resource
import statistics
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import equinox as eqx
import jax
import jax.numpy as jnp
import torch
import torch.nn.functional as tF

import analogeq
from analogeq import EulerRelaxation, LeakyNetwork
from analogeq.config import TrainConfig
from analogeq.data import Dataset, load_task
from analogeq.assembly import build_digital
from analogeq.training import make_train_step

# ----------------------------------------------------------------------------- settings

EPS, T1, T2 = 0.5, 60, 20
STATE_TOL = 1e-4      # max |s_jax - s_torch| allowed by the relaxation sanity check
COSINE_MIN = 0.999    # min cosine(g_torch, g_jax) allowed by the gradient sanity check


@dataclass(frozen=True)
class Case:
    sizes: tuple[int, ...]
    batch: int

    @property
    def name(self) -> str:
        return "-".join(str(n) for n in self.sizes)

    @property
    def digits(self) -> bool:
        return self.sizes[0] == 64 and self.sizes[-1] == 10


FULL_CASES = [
    Case((64, 128, 10), 32),
    Case((64, 128, 10), 256),
    Case((784, 256, 10), 256),
    Case((784, 512, 512, 10), 256),
    Case((1024, 1024, 1024, 10), 256),
]
QUICK_CASES = [
    Case((64, 128, 10), 32),
    Case((48, 32, 32, 10), 16),
]


def n_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - non-Linux
        return os.cpu_count() or 1


# ----------------------------------------------------------------------------- data

_DIGITS: Dataset | None = None


def dataset_for(case: Case, n_train: int = 2048) -> Dataset:
    """The digits task for 64-...-10 networks, otherwise random inputs in [0, 1) and labels."""
    global _DIGITS
    if case.digits:
        if _DIGITS is None:
            _DIGITS = load_task("digits")
        return _DIGITS
    rng = np.random.default_rng(abs(hash(case.sizes)) % 2**32)
    n_in, n_cls = case.sizes[0], case.sizes[-1]
    x = rng.random((n_train, n_in), dtype=np.float32)
    y = rng.integers(0, n_cls, n_train).astype(np.int32)
    return Dataset(x, y, x[:256], y[:256], n_classes=n_cls, name=f"synthetic-{case.name}")


# ----------------------------------------------------------------------------- timing

def time_calls(fn, repeats: int, budget_s: float, min_repeats: int = 3) -> list[float]:
    """Wall times (s) of ``fn()`` calls: ``repeats`` of them, or fewer (at least ``min_repeats``)
    once ``budget_s`` seconds have been spent."""
    times: list[float] = []
    spent = 0.0
    while len(times) < repeats:
        t0 = time.perf_counter()
        fn()
        dt = time.perf_counter() - t0
        times.append(dt)
        spent += dt
        if spent > budget_s and len(times) >= min_repeats:
            break
    return times


def pause():
    """Let the other framework's worker threads go idle before timing (2 cores are shared)."""
    time.sleep(0.3)


def cpu_snapshot() -> tuple[float, float, float]:
    """``(wall s, CPU s busy on the whole machine, CPU s used by this process)``."""
    busy = float("nan")
    try:
        with open("/proc/stat") as f:
            v = [int(t) for t in f.readline().split()[1:]]
        busy = (sum(v[:8]) - v[3] - v[4]) / os.sysconf("SC_CLK_TCK")  # minus idle and iowait
    except (OSError, ValueError, IndexError):
        pass
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return time.perf_counter(), busy, ru.ru_utime + ru.ru_stime


def foreign_share(a, b) -> float:
    """Share of the machine's CPU (0..1) that other processes used between two snapshots."""
    wall = b[0] - a[0]
    other = (b[1] - a[1]) - (b[2] - a[2])
    if not wall > 0 or other != other:  # nan: no /proc/stat
        return float("nan")
    return min(max(other / (wall * n_cores()), 0.0), 1.0)


class Quiet:
    """Waits (bounded) for other processes to leave the CPU before each measurement and records
    how much CPU they took during it, so that contended timings are visible."""

    def __init__(self, max_wait_s: float, total_wait_s: float, threshold: float, log):
        self.max_wait_s, self.total_left = max_wait_s, total_wait_s
        self.threshold, self.log = threshold, log
        self.waited = 0.0

    def wait(self, what: str):
        """Returns the snapshot that opened the last 0.5 s sample (the contention window of the
        measurement that follows starts there, so that it is never shorter than 0.5 s)."""
        t0 = time.perf_counter()
        limit = min(self.max_wait_s, self.total_left)
        while True:
            a = cpu_snapshot()
            time.sleep(0.5)
            share = foreign_share(a, cpu_snapshot())
            if not share > self.threshold:
                break
            if time.perf_counter() - t0 > limit:
                self.log(f"    warning: other processes use {100 * share:.0f}% of the CPU; "
                         f"timing {what} anyway")
                break
        dt = time.perf_counter() - t0 - 0.5
        if dt > 0.5:
            self.log(f"    waited {dt:.0f} s for other processes to leave the CPU ({what})")
        self.waited += max(dt, 0.0)
        self.total_left = max(self.total_left - max(dt, 0.0), 0.0)
        return a

    def timed(self, what: str, fn, repeats: int, budget_s: float):
        """``(times, foreign CPU share during them and the 0.5 s before)``; a measurement that
        other processes disturbed is taken again (twice at most) while waiting time is left."""
        for attempt in range(3):
            a = self.wait(what)
            times = time_calls(fn, repeats, budget_s)
            share = foreign_share(a, cpu_snapshot())
            if not share > self.threshold or attempt == 2 or self.total_left < 1.0:
                return times, share
            self.log(f"    other processes took {100 * share:.0f}% of the CPU while timing {what}; "
                     "measuring again")
        return times, share


# ----------------------------------------------------------------------------- torch model

class TorchLeaky:
    """The leaky layered network in plain PyTorch, batched: states ``(B, N)``, inputs ``(B, n_0)``.

    Parameters are copied from an analogeq :class:`LeakyNetwork` (``weights[l]`` is
    ``(n_{l+1}, n_l)``, ``feedback[l]`` is ``(n_{l+1}, n_{l+2})``, ``biases[l]`` is ``(n_{l+1},)``).
    """

    def __init__(self, jmodel: LeakyNetwork):
        def t(a):
            return torch.from_numpy(np.array(a, dtype=np.float32, copy=True)).requires_grad_(True)

        self.sizes = tuple(jmodel.sizes)
        self.W = [t(w) for w in jmodel.weights]
        self.B = [t(b) for b in jmodel.feedback]
        self.b = [t(b) for b in jmodel.biases]
        self.L = len(self.sizes) - 1
        self.N = sum(self.sizes[1:])
        self.n_out = self.sizes[-1]

    def parameters(self) -> list[torch.Tensor]:
        """In analogeq's leaf order: weights, feedback, biases."""
        return [*self.W, *self.B, *self.b]

    def input_drive(self, x):
        """``W_0 x + b_0``: constant during a relaxation. XLA hoists it out of analogeq's
        while loop (loop-invariant code motion), so the eager loop hoists it by hand too."""
        return tF.linear(x, self.W[0], self.b[0])

    def force(self, s, drive0):
        hs = torch.split(s, self.sizes[1:], dim=1)
        rs = [torch.tanh(h) for h in hs]
        out = []
        for l in range(self.L):
            d = drive0 if l == 0 else tF.linear(rs[l - 1], self.W[l], self.b[l])
            if l + 1 < self.L:
                d = d + tF.linear(rs[l + 1], self.B[l])
            out.append(d - hs[l])
        return torch.cat(out, dim=1)

    def force_full(self, s, x):
        return self.force(s, self.input_drive(x))


def torch_residual(s, f):
    """Per-row ``|F| / max(|s|, 1e-12)`` (analogeq.emulator.residual)."""
    return torch.linalg.vector_norm(f, dim=1) / torch.linalg.vector_norm(s, dim=1).clamp_min(1e-12)


def torch_euler(field, s, eps: float, steps: int):
    """``steps`` explicit-Euler steps as analogeq.emulator.euler runs them (steps + 1 evaluations:
    the last one gives the residual). Returns the final state and force."""
    f = field(s)
    for _ in range(steps):
        s = s + eps * f
        f = field(s)
    if not bool(torch.isfinite(s).all()):
        raise FloatingPointError("torch relaxation produced a non-finite state")
    return s, f


@torch.no_grad()
def torch_free_phase(net: TorchLeaky, x, eps: float = EPS, steps: int = T1):
    d0 = net.input_drive(x)
    s0 = torch.zeros(x.shape[0], net.N, dtype=x.dtype)
    s, f = torch_euler(lambda s: net.force(s, d0), s0, eps, steps)
    return s, f


class TorchAsymEP:
    """One AsymEP centered training step in PyTorch eager, mirroring analogeq's jit step."""

    def __init__(self, net: TorchLeaky, cfg: TrainConfig, jvp_mode: str = "jvp"):
        if cfg.cost != "squared_error" or cfg.ep_kind != "centered" or cfg.correction != "asym":
            raise ValueError("the torch reference implements squared_error / centered / asym only")
        self.net, self.cfg, self.jvp_mode = net, cfg, jvp_mode
        self.opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)  # optax.adam defaults match

    def gradients(self, x, y):
        """Force-form AsymEP gradient of the mean cost (the estimator only) plus metrics."""
        net, cfg = self.net, self.cfg
        Bsz, N, n_out = x.shape[0], net.N, net.n_out
        onehot = tF.one_hot(y.long(), n_out).to(x.dtype)
        with torch.no_grad():
            # free phase
            d0 = net.input_drive(x)
            s0 = torch.zeros(Bsz, N, dtype=x.dtype)
            s_star, f_star = torch_euler(lambda s: net.force(s, d0), s0, cfg.eps, cfg.T1)
            free_res = torch_residual(s_star, f_star)
            converged = free_res <= cfg.tol

            # both nudged phases stacked along the batch: rows [0, B) nudge +beta, [B, 2B) -beta
            S_star = torch.cat([s_star, s_star], 0)
            D0 = torch.cat([d0, d0], 0)
            T = torch.cat([onehot, onehot], 0)
            betas = torch.cat([torch.full((Bsz, 1), cfg.beta), torch.full((Bsz, 1), -cfg.beta)], 0)
            F_at = lambda s: net.force(s, D0)  # noqa: E731
            _, vjp_fn = torch.func.vjp(F_at, S_star)                    # J^T v at s*, reusable
            if self.jvp_mode == "linearize":
                _, jv = torch.func.linearize(F_at, S_star)              # J v at s*, traced once
            else:
                jv = lambda v: torch.func.jvp(F_at, (S_star,), (v,))[1]  # noqa: E731
            pad = torch.zeros(2 * Bsz, N - n_out, dtype=x.dtype)

            def field(S):
                dC = torch.cat([pad, S[:, N - n_out:] - T], 1)          # dC/ds = R^T (y - t)
                V = S - S_star
                return F_at(S) - betas * dC - (jv(V) - vjp_fn(V)[0])

            S, Fn = torch_euler(field, S_star, cfg.eps, cfg.T2)
            s_plus, s_minus = S[:Bsz], S[Bsz:]
            a = -(s_plus - s_minus) / (2 * cfg.beta)
            nres = torch.sqrt((Fn[:Bsz] ** 2).sum(1) + (Fn[Bsz:] ** 2).sum(1)) / torch.sqrt(
                (S[:Bsz] ** 2).sum(1) + (S[Bsz:] ** 2).sum(1)).clamp_min(1e-12)

            used = converged if cfg.gate else torch.ones_like(converged)
            weight = used.to(a.dtype) / used.sum().clamp_min(1)
            a_w = a * weight[:, None]

        # force-form gradient g = sum_b a_b^T dF(s*_b; x_b)/dtheta
        with torch.enable_grad():
            F = net.force_full(s_star, x)
            grads = torch.autograd.grad(F, net.parameters(), grad_outputs=a_w)

        with torch.no_grad():
            yhat = s_star[:, N - n_out:]
            metrics = {
                "loss": (0.5 * ((yhat - onehot) ** 2).sum(1)).mean(),
                "train_acc": (yhat.argmax(1) == y.long()).float().mean(),
                "free_residual_max": free_res.max(),
                "unconverged": (~converged).sum(),
                "nudged_residual_max": nres.max(),
            }
        return grads, s_star, metrics

    def step(self, x, y):
        grads, _, metrics = self.gradients(x, y)
        for p, g in zip(self.net.parameters(), grads):
            p.grad = g
        self.opt.step()
        return metrics


# ----------------------------------------------------------------------------- analogeq side

@eqx.filter_jit
def jax_free(model, relaxation, xs):
    return analogeq.free_phase(model, relaxation, xs)


@eqx.filter_jit
def jax_estimate(parts_static, model, xs, ys, gate):
    cost, relaxation, estimator = parts_static
    return estimator.estimate(model, cost, relaxation, xs, ys, gate=gate)


def flat_grads_jax(grads) -> np.ndarray:
    leaves = [*grads.weights, *grads.feedback, *grads.biases]
    return np.concatenate([np.asarray(g, dtype=np.float64).ravel() for g in leaves])


def flat_grads_torch(grads) -> np.ndarray:
    return np.concatenate([g.detach().double().numpy().ravel() for g in grads])


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


# ----------------------------------------------------------------------------- benchmarks

def bench_relaxation(case: Case, repeats: int, budget_s: float, quiet: Quiet, log) -> dict:
    data = dataset_for(case)
    model = LeakyNetwork(case.sizes, key=jax.random.PRNGKey(0), asymmetry=0.5, gain=0.5)
    relax = EulerRelaxation(eps=EPS, T1=T1, T2=T2)
    x_np = np.ascontiguousarray(data.x_train[: case.batch])
    xj, xt = jnp.asarray(x_np), torch.from_numpy(x_np.copy())
    net = TorchLeaky(model)

    # analogeq: first call (trace + compile + one run), then steady state
    t0 = time.perf_counter()
    jax.block_until_ready(jax_free(model, relax, xj))
    first = time.perf_counter() - t0
    res = jax.block_until_ready(jax_free(model, relax, xj))

    # sanity: same final state
    s_torch, _ = torch_free_phase(net, xt)
    diff = float(np.max(np.abs(np.asarray(res.state) - s_torch.numpy())))
    log(f"  [{case.name} b{case.batch}] relaxation sanity: max |s_jax - s_torch| = {diff:.3e}")
    if not diff < STATE_TOL:
        raise SystemExit(f"ABORT: free states differ by {diff:.3e} >= {STATE_TOL} for {case}")

    pause()
    tj, oj = quiet.timed("analogeq", lambda: jax.block_until_ready(jax_free(model, relax, xj)),
                         repeats, budget_s)
    pause()
    for _ in range(2):
        torch_free_phase(net, xt)
    tt, ot = quiet.timed("torch", lambda: torch_free_phase(net, xt), repeats, budget_s)

    mj, mt = statistics.median(tj), statistics.median(tt)
    work = case.batch * T1
    return {
        "benchmark": "relaxation", "size": case.name, "batch": case.batch, "T1": T1, "eps": EPS,
        "analogeq_ms": 1e3 * mj, "torch_ms": 1e3 * mt, "speedup": mt / mj,
        "analogeq_compile_s": max(first - mj, 0.0), "analogeq_first_call_s": first,
        "analogeq_samples_steps_per_s": work / mj, "torch_samples_steps_per_s": work / mt,
        "analogeq_repeats": len(tj), "torch_repeats": len(tt),
        "analogeq_ms_min": 1e3 * min(tj), "torch_ms_min": 1e3 * min(tt),
        "max_abs_state_diff": diff,
        "analogeq_foreign_cpu": oj, "torch_foreign_cpu": ot,
    }


def bench_train_step(case: Case, repeats: int, budget_s: float, jvp_mode: str, quiet: Quiet,
                     log) -> dict:
    data = dataset_for(case)
    cfg = TrainConfig(hidden=case.sizes[1:-1], batch_size=case.batch)
    assert (data.n_features, *cfg.hidden, data.n_classes) == case.sizes
    parts = build_digital(cfg, data=data)
    step = make_train_step(parts, cfg.gate)
    model, state = parts.model, parts.updater.init(parts.model)

    # batches as the training loop draws them, converted up front (only the step is timed)
    n_batches = repeats + 3
    idx = [data.batch_indices(k, cfg.batch_size, cfg.seed) for k in range(n_batches)]
    xs_np = [np.ascontiguousarray(data.x_train[i]) for i in idx]
    ys_np = [np.ascontiguousarray(data.y_train[i]) for i in idx]
    xj, yj = [jnp.asarray(a) for a in xs_np], [jnp.asarray(a) for a in ys_np]
    xt, yt = [torch.from_numpy(a.copy()) for a in xs_np], [torch.from_numpy(a.copy()) for a in ys_np]
    base_key = jax.random.fold_in(jax.random.PRNGKey(cfg.seed), 1)
    keys = [jax.random.fold_in(base_key, k) for k in range(n_batches)]

    # sanity: the torch EP gradient against analogeq's for the same weights and batch
    net = TorchLeaky(model)
    tstep = TorchAsymEP(net, cfg, jvp_mode=jvp_mode)
    est = jax_estimate((parts.cost, parts.relaxation, parts.estimator), model, xj[0], yj[0], cfg.gate)
    g_t, s_t, m_t = tstep.gradients(xt[0], yt[0])
    gj, gt = flat_grads_jax(est.grads), flat_grads_torch(g_t)
    cos = cosine(gj, gt)
    rel = float(np.linalg.norm(gt - gj) / np.linalg.norm(gj))
    sdiff = float(np.max(np.abs(np.asarray(est.free.state) - s_t.numpy())))
    unconv_j, unconv_t = int(jnp.sum(~est.free.converged)), int(m_t["unconverged"])
    log(f"  [{case.name} b{case.batch}] gradient sanity: cosine = {cos:.7f}, rel error = {rel:.2e}, "
        f"max |s*_jax - s*_torch| = {sdiff:.2e}, unconverged jax/torch = {unconv_j}/{unconv_t}")
    if not cos > COSINE_MIN:
        raise SystemExit(f"ABORT: gradient cosine {cos:.6f} <= {COSINE_MIN} for {case}")

    # analogeq: the jit train step, carrying (model, opt state) as the training loop does
    carry = {"m": model, "s": state, "k": 0}

    def jax_call():
        k = carry["k"] % n_batches
        m, s, metrics = step(carry["m"], carry["s"], xj[k], yj[k], keys[k])
        jax.block_until_ready((m, s, metrics))
        carry.update(m=m, s=s, k=carry["k"] + 1)

    t0 = time.perf_counter()
    jax_call()
    first = time.perf_counter() - t0
    jax_call()
    pause()
    tj, oj = quiet.timed("analogeq", jax_call, repeats, budget_s)

    tcarry = {"k": 0}

    def torch_call():
        k = tcarry["k"] % n_batches
        tstep.step(xt[k], yt[k])
        tcarry["k"] += 1

    pause()
    for _ in range(2):
        torch_call()
    tt, ot = quiet.timed("torch", torch_call, repeats, budget_s)

    mj, mt = statistics.median(tj), statistics.median(tt)
    return {
        "benchmark": "train_step", "size": case.name, "batch": case.batch, "T1": cfg.T1,
        "T2": cfg.T2, "eps": cfg.eps, "beta": cfg.beta, "lr": cfg.lr, "gate": cfg.gate,
        "analogeq_ms": 1e3 * mj, "torch_ms": 1e3 * mt, "speedup": mt / mj,
        "analogeq_compile_s": max(first - mj, 0.0), "analogeq_first_call_s": first,
        "analogeq_repeats": len(tj), "torch_repeats": len(tt),
        "analogeq_ms_min": 1e3 * min(tj), "torch_ms_min": 1e3 * min(tt),
        "grad_cosine": cos, "grad_rel_error": rel, "max_abs_free_state_diff": sdiff,
        "unconverged_jax": unconv_j, "unconverged_torch": unconv_t, "torch_jvp": jvp_mode,
        "analogeq_foreign_cpu": oj, "torch_foreign_cpu": ot,
    }


# ----------------------------------------------------------------------------- reporting

def machine_info() -> dict:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        load = os.getloadavg()
    except OSError:
        load = (float("nan"),) * 3
    import jaxlib
    return {
        "cpu_model": cpu,
        "cores": n_cores(),
        "torch_threads": torch.get_num_threads(),
        "jax": jax.__version__,
        "jaxlib": jaxlib.__version__,
        "equinox": eqx.__version__,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "jax_devices": [str(d) for d in jax.devices()],
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "loadavg_start": [round(v, 2) for v in load],
    }


def machine_line(m: dict) -> str:
    return (f"CPU: {m['cpu_model']}, {m['cores']} cores; torch threads {m['torch_threads']}; "
            f"jax {m['jax']} (jaxlib {m['jaxlib']}), equinox {m['equinox']}, torch {m['torch']}, "
            f"Python {m['python']}; {m['date']}")


def markdown_table(rows: list[dict]) -> str:
    lines = ["| size | batch | analogeq ms | torch eager ms | speedup | analogeq compile s |",
             "|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['size']} | {r['batch']} | {r['analogeq_ms']:.2f} | {r['torch_ms']:.2f} "
                     f"| {r['speedup']:.2f}x | {r['analogeq_compile_s']:.2f} |")
    return "\n".join(lines)


def write_csv(path: Path, rows: list[dict]) -> None:
    if not rows:
        return
    keys = list(rows[0])
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)


# ----------------------------------------------------------------------------- main

def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="benchmarks/results", help="output folder (default: %(default)s)")
    p.add_argument("--quick", action="store_true", help="tiny smoke mode (two small networks, 3 repeats)")
    p.add_argument("--repeats", type=int, default=None,
                   help="timed calls per measurement, median reported (default 20; 3 with --quick)")
    p.add_argument("--budget", type=float, default=None,
                   help="seconds per measurement after which fewer repeats are taken (min 3; "
                        "default 20, 2 with --quick)")
    p.add_argument("--torch-jvp", choices=("jvp", "linearize"), default="jvp",
                   help="how the torch train step forms J v at s*: torch.func.jvp at every Euler "
                        "step (default; faster here except at 1024-1024-1024-10) or "
                        "torch.func.linearize traced once per step")
    p.add_argument("--max-wait", type=float, default=60.0,
                   help="before each measurement wait up to this many seconds for other processes "
                        "to leave the CPU (0: never wait; 5 times this per run in all; default %(default)s)")
    p.add_argument("--only", choices=("relaxation", "train_step"), default=None,
                   help="run one of the two benchmarks")
    args = p.parse_args(argv)
    repeats = args.repeats if args.repeats is not None else (3 if args.quick else 20)
    budget = args.budget if args.budget is not None else (2.0 if args.quick else 20.0)
    if repeats < 1:
        p.error("--repeats must be >= 1")
    cases = QUICK_CASES if args.quick else FULL_CASES

    warnings.filterwarnings("ignore", category=UserWarning, module=r"torch\.fx.*")
    torch.set_num_threads(n_cores())
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    def log(msg):
        print(msg, flush=True)

    t_start = time.perf_counter()
    info = machine_info()
    log(machine_line(info))
    log(f"mode: {'quick' if args.quick else 'full'}; repeats {repeats} (median; fewer past "
        f"{budget:g} s per measurement); float32; eps {EPS}, T1 {T1}, T2 {T2}")

    quiet = Quiet(args.max_wait, 5.0 * max(args.max_wait, 0.0), 0.10, log)
    relax_rows, train_rows = [], []
    if args.only in (None, "relaxation"):
        log("\n== free-phase relaxation (T1 = 60 Euler steps) ==")
        for case in cases:
            r = bench_relaxation(case, repeats, budget, quiet, log)
            relax_rows.append(r)
            log(f"  [{case.name} b{case.batch}] analogeq {r['analogeq_ms']:.2f} ms "
                f"({r['analogeq_samples_steps_per_s']:.3g} sample-steps/s), torch {r['torch_ms']:.2f} ms "
                f"({r['torch_samples_steps_per_s']:.3g} sample-steps/s), compile {r['analogeq_compile_s']:.2f} s")
    if args.only in (None, "train_step"):
        log("\n== AsymEP centered train step (T1 = 60, 2 x T2 = 20, Adam) ==")
        for case in cases:
            r = bench_train_step(case, repeats, budget, args.torch_jvp, quiet, log)
            train_rows.append(r)
            log(f"  [{case.name} b{case.batch}] analogeq {r['analogeq_ms']:.2f} ms/step, "
                f"torch {r['torch_ms']:.2f} ms/step, compile {r['analogeq_compile_s']:.2f} s")

    wall = time.perf_counter() - t_start
    info["wall_s"] = round(wall, 1)
    info["mode"] = "quick" if args.quick else "full"
    info["repeats"] = repeats
    info["budget_s"] = budget
    info["waited_for_idle_s"] = round(quiet.waited, 1)
    info["loadavg_end"] = [round(v, 2) for v in os.getloadavg()]
    rows = relax_rows + train_rows
    worst = max((max(r["analogeq_foreign_cpu"], r["torch_foreign_cpu"]) for r in rows
                 if r["analogeq_foreign_cpu"] == r["analogeq_foreign_cpu"]), default=0.0)
    info["max_foreign_cpu_share"] = round(worst, 3)

    tables = []
    if relax_rows:
        tables.append("### Free-phase relaxation (T1 = 60 Euler steps, eps = 0.5, float32), ms per batch\n\n"
                      + markdown_table(relax_rows))
    if train_rows:
        tables.append("### AsymEP centered train step (T1 = 60, T2 = 20 x 2 nudged phases, Adam), "
                      "ms per step\n\n" + markdown_table(train_rows))
    note = ("speedup = torch eager ms / analogeq ms (> 1: analogeq faster). analogeq compile s = "
            "first jit call minus the steady-state median. Times are medians of up to "
            f"{repeats} calls (see the JSON for the count actually taken). torch train step: "
            f"J v by torch.func.{args.torch_jvp}, J^T v by one torch.func.vjp at s* reused.")
    log("")
    for t in tables:
        log(t + "\n")
    log(note)
    contention = (f"Other processes took at most {100 * worst:.0f}% of the machine's CPU during any "
                  "measurement" + (" -- WARNING: these timings are contended; rerun on an idle "
                                   "machine." if worst > 0.10 else "."))
    log(contention)
    log(f"\nwall time: {wall:.1f} s")

    (out / "emulator_results.json").write_text(json.dumps(
        {"machine": info, "relaxation": relax_rows, "train_step": train_rows}, indent=2))
    write_csv(out / "emulator_relaxation.csv", relax_rows)
    write_csv(out / "emulator_train_step.csv", train_rows)
    md = ["# Emulator benchmark: analogeq (JAX jit) vs PyTorch eager, CPU", "",
          machine_line(info), "",
          f"Mode {info['mode']}; whole run {wall:.0f} s; load average at start "
          f"{' '.join(str(v) for v in info['loadavg_start'])}.", "", *[t + "\n" for t in tables], note, "", contention, ""]
    (out / "emulator_tables.md").write_text("\n".join(md))
    log(f"wrote {out}/emulator_results.json, emulator_relaxation.csv, emulator_train_step.csv, "
        "emulator_tables.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
