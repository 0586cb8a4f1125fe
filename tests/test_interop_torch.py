"""PyTorch state-dict import/export of the equilibrium transformer (skipped without torch)."""

import sys

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import analogeq as aq
from analogeq.interop import torch as tio


def test_missing_torch_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)
    m = aq.EqTransformer(5, 4, 8, 2, key=jax.random.PRNGKey(0))
    with pytest.raises(ImportError, match=r"\.\[torch\]"):
        tio.to_state_dict(m)


torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def block():
    return aq.EqTransformer(7, 6, 16, 4, key=jax.random.PRNGKey(3), dtype=jnp.float64, max_len=9, damping=0.7)


def test_state_dict_names_shapes_and_round_trip(block, tmp_path):
    sd = tio.to_state_dict(block)
    assert list(sd) == list(tio.STATE_DICT_NAMES)
    assert tuple(sd["attn.q.weight"].shape) == (16, 16) and tuple(sd["ffn.fc1.weight"].shape) == (64, 16)
    assert tuple(sd["head.weight"].shape) == (7, 16) and tuple(sd["pos_emb.weight"].shape) == (9, 16)
    np.testing.assert_array_equal(sd["ffn.fc1.weight"].numpy(), np.asarray(block.W_1).T)
    back = tio.from_state_dict(sd, dtype=jnp.float64, **tio.block_hparams(block))
    for name in ("tok", "pos", "W_q", "W_o", "W_1", "b_1", "W_2", "W_h", "ln2_g"):
        np.testing.assert_array_equal(getattr(back, name), getattr(block, name))
    assert (back.n_heads, back.damping, back.qk_norm, back.seq_len) == (4, 0.7, True, 6)
    tio.save_state_dict(block, tmp_path / "block.pt")
    again = tio.load_state_dict(tmp_path / "block.pt", dtype=jnp.float64)
    np.testing.assert_array_equal(again.W_k, block.W_k)


def test_torch_reference_field_matches(block):
    sd = tio.to_state_dict(block)
    idx = np.array([[1, 2, 0, 6, 3, 3], [0, 0, 5, 4, 1, 2]])
    z = np.random.default_rng(0).normal(size=(2, 6, 16))
    force = eqx.filter_jit(lambda m, zz, ii: jax.vmap(m.force)(zz, ii))
    ours = force(block, jnp.asarray(z), jnp.asarray(idx))
    theirs = tio.torch_force(sd, torch.from_numpy(z), torch.from_numpy(idx), n_heads=4, damping=0.7)
    np.testing.assert_allclose(theirs.numpy(), np.asarray(ours), rtol=1e-10, atol=1e-12)
    # A block defined in PyTorch (random state dict): relaxed in PyTorch, its fixed point is one here.
    gen = torch.Generator().manual_seed(0)
    sd2 = {k: 0.3 * torch.randn(v.shape, generator=gen, dtype=torch.float64) for k, v in sd.items()}
    m2 = tio.from_state_dict(sd2, n_heads=4, damping=1.0, dtype=jnp.float64)
    zt = torch.zeros(6, 16, dtype=torch.float64)
    it = torch.from_numpy(idx[0].copy())
    with torch.no_grad():
        for _ in range(120):
            zt = zt + 0.5 * tio.torch_force(sd2, zt, it, n_heads=4)
    assert float(tio.torch_force(sd2, zt, it, n_heads=4).abs().max()) < 1e-10
    here = force(m2, jnp.asarray(zt.numpy())[None], jnp.asarray(idx[:1]))
    assert float(jnp.max(jnp.abs(here))) < 1e-9


def test_bad_state_dict(block):
    sd = tio.to_state_dict(block)
    sd.pop("ln1.bias")
    sd["extra"] = torch.zeros(1)
    with pytest.raises(ValueError, match=r"missing \['ln1.bias'\], unexpected \['extra'\]"):
        tio.from_state_dict(sd, n_heads=4)
    sd = tio.to_state_dict(block)
    sd["attn.o.weight"] = torch.zeros(16, 8, dtype=torch.float64)
    with pytest.raises(ValueError, match="W_o must have shape"):
        tio.from_state_dict(sd, n_heads=4)
