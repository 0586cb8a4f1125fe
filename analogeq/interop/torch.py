"""Import and export the equilibrium transformer block as a PyTorch state dict (``torch`` extra).

A block trained with a PyTorch emulator can be relaxed, diagnosed and run on the chip here, and a
block trained here can be loaded into PyTorch. ``torch`` is imported lazily; without it these
functions raise ``ImportError`` naming the extra (``pip install -e .[torch]``).

State-dict names and shapes (``V`` vocabulary, ``L`` positional table length, ``d`` width,
``m`` FFN multiple; ``nn.Linear`` layout, ``weight`` is ``(out_features, in_features)`` and the
layer computes ``h @ weight.T + bias``):

=====================  ============  =======================================================
name                   shape         analogeq field
=====================  ============  =======================================================
``tok_emb.weight``     ``(V, d)``    ``tok``
``pos_emb.weight``     ``(L, d)``    ``pos``
``ln1.weight``         ``(d,)``      ``ln1_g``
``ln1.bias``           ``(d,)``      ``ln1_b``
``attn.q.weight``      ``(d, d)``    ``W_q.T`` (no bias)
``attn.k.weight``      ``(d, d)``    ``W_k.T`` (no bias)
``attn.v.weight``      ``(d, d)``    ``W_v.T`` (no bias)
``attn.o.weight``      ``(d, d)``    ``W_o.T`` (no bias)
``ln2.weight``         ``(d,)``      ``ln2_g``
``ln2.bias``           ``(d,)``      ``ln2_b``
``ffn.fc1.weight``     ``(m d, d)``  ``W_1.T``
``ffn.fc1.bias``       ``(m d,)``    ``b_1``
``ffn.fc2.weight``     ``(d, m d)``  ``W_2.T``
``ffn.fc2.bias``       ``(d,)``      ``b_2``
``head.weight``        ``(V, d)``    ``W_h.T`` (no bias)
=====================  ============  =======================================================

Hyper-parameters that are not tensors (``n_heads``, ``damping``, ``qk_norm``, ``seq_len``) are
passed to :func:`from_state_dict` and returned by :func:`block_hparams`. Layer norms use
``eps = 1e-5``; the q/k RMS norm has no gain and ``eps = 1e-6``; heads split the feature axis
into ``H`` contiguous slices of ``d / H`` (``q.view(T, H, d / H)``), scores are scaled by
``1 / sqrt(d / H)``; GELU is ``approximate="tanh"``. :func:`torch_force` is the same field
written in PyTorch, the reference a PyTorch emulator must match.
"""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np

from analogeq.models.transformer import LN_EPS, RMS_EPS, EqTransformer

# (state-dict name, analogeq field, transposed)
LAYOUT = (
    ("tok_emb.weight", "tok", False),
    ("pos_emb.weight", "pos", False),
    ("ln1.weight", "ln1_g", False),
    ("ln1.bias", "ln1_b", False),
    ("attn.q.weight", "W_q", True),
    ("attn.k.weight", "W_k", True),
    ("attn.v.weight", "W_v", True),
    ("attn.o.weight", "W_o", True),
    ("ln2.weight", "ln2_g", False),
    ("ln2.bias", "ln2_b", False),
    ("ffn.fc1.weight", "W_1", True),
    ("ffn.fc1.bias", "b_1", False),
    ("ffn.fc2.weight", "W_2", True),
    ("ffn.fc2.bias", "b_2", False),
    ("head.weight", "W_h", True),
)
STATE_DICT_NAMES = tuple(name for name, _, _ in LAYOUT)


def _torch():
    try:
        import torch
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("PyTorch interop needs the optional 'torch' extra: pip install -e .[torch] "
                          "(or pip install 'analogeq[torch]')") from e
    return torch


def to_state_dict(model: EqTransformer, dtype=None) -> dict:
    """The block's weights as a PyTorch state dict (an ordered ``dict`` of ``torch.Tensor``; names
    and shapes in the module docstring). ``dtype``: a torch dtype (default: the model's)."""
    torch = _torch()
    if not isinstance(model, EqTransformer):
        raise TypeError(f"to_state_dict exports an EqTransformer; got {type(model).__name__}")
    out = {}
    for name, field, transposed in LAYOUT:
        a = np.asarray(getattr(model, field))
        t = torch.from_numpy(np.ascontiguousarray(a.T if transposed else a).copy())
        out[name] = t.to(dtype) if dtype is not None else t
    return out


def block_hparams(model: EqTransformer) -> dict:
    """The non-tensor hyper-parameters to store beside a state dict."""
    return {"n_heads": model.n_heads, "damping": model.damping, "qk_norm": model.qk_norm,
            "seq_len": model.seq_len}


def from_state_dict(state_dict: dict, *, n_heads: int, damping: float = 1.0, qk_norm: bool = True,
                    seq_len: int | None = None, dtype=jnp.float32) -> EqTransformer:
    """An :class:`EqTransformer` from a PyTorch state dict (names and shapes in the module
    docstring; tensors or arrays). Extra keys (e.g. a ``"module."`` wrapper's buffers) raise,
    naming them; ``seq_len`` defaults to the positional table length."""
    missing = [n for n in STATE_DICT_NAMES if n not in state_dict]
    extra = sorted(set(state_dict) - set(STATE_DICT_NAMES))
    if missing or extra:
        raise ValueError(f"state dict does not match the EqTransformer layout: missing {missing}, "
                         f"unexpected {extra}; expected exactly {list(STATE_DICT_NAMES)}")
    params = {}
    for name, field, transposed in LAYOUT:
        t = state_dict[name]
        a = t.detach().cpu().numpy() if hasattr(t, "detach") else np.asarray(t)
        if transposed:
            if a.ndim != 2:
                raise ValueError(f"{name} must be a matrix; got shape {a.shape}")
            a = a.T
        params[field] = jnp.asarray(a, dtype)
    v, d = params["tok"].shape
    return EqTransformer(v, int(seq_len or params["pos"].shape[0]), d, n_heads, key=None,
                         ffn_mult=max(1, params["W_1"].shape[1] // max(d, 1)), damping=damping,
                         qk_norm=qk_norm, max_len=params["pos"].shape[0], parameters=params)


def torch_force(state_dict: dict, z, idx, *, n_heads: int, damping: float = 1.0, qk_norm: bool = True):
    """``F(z; idx)`` in PyTorch from a state dict: ``z`` ``(T, d)`` (or ``(B, T, d)``), ``idx``
    ``(T,)`` (or ``(B, T)``) int64; the reference a PyTorch emulator of this block computes."""
    torch = _torch()
    F = torch.nn.functional
    sd = state_dict
    squeeze = z.dim() == 2
    if squeeze:
        z, idx = z[None], idx[None]
    b, t, d = z.shape
    dh = d // n_heads
    x_in = sd["tok_emb.weight"][idx] + sd["pos_emb.weight"][:t]
    h = F.layer_norm(z, (d,), sd["ln1.weight"], sd["ln1.bias"], eps=LN_EPS)
    q = F.linear(h, sd["attn.q.weight"]).view(b, t, n_heads, dh).transpose(1, 2)
    k = F.linear(h, sd["attn.k.weight"]).view(b, t, n_heads, dh).transpose(1, 2)
    v = F.linear(h, sd["attn.v.weight"]).view(b, t, n_heads, dh).transpose(1, 2)
    if qk_norm:
        q = q / torch.sqrt((q * q).mean(-1, keepdim=True) + RMS_EPS)
        k = k / torch.sqrt((k * k).mean(-1, keepdim=True) + RMS_EPS)
    scores = q @ k.transpose(-2, -1) / math.sqrt(dh)
    mask = torch.ones(t, t, dtype=torch.bool, device=z.device).tril()
    p = torch.softmax(scores.masked_fill(~mask, float("-inf")), dim=-1)
    o = (p @ v).transpose(1, 2).reshape(b, t, d)
    attn = F.linear(o, sd["attn.o.weight"])
    h2 = F.layer_norm(z, (d,), sd["ln2.weight"], sd["ln2.bias"], eps=LN_EPS)
    ffn = F.linear(F.gelu(F.linear(h2, sd["ffn.fc1.weight"], sd["ffn.fc1.bias"]), approximate="tanh"),
                   sd["ffn.fc2.weight"], sd["ffn.fc2.bias"])
    out = -(z - x_in) + attn + ffn - damping * z
    return out[0] if squeeze else out


def save_state_dict(model: EqTransformer, path) -> None:
    """``torch.save({"state_dict": ..., "hparams": ...}, path)``."""
    torch = _torch()
    torch.save({"state_dict": to_state_dict(model), "hparams": block_hparams(model)}, path)


def load_state_dict(path, dtype=jnp.float32) -> EqTransformer:
    """Read a file written by :func:`save_state_dict` (or any ``{"state_dict", "hparams"}`` dict)."""
    torch = _torch()
    blob = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(blob, dict) or "state_dict" not in blob or "hparams" not in blob:
        raise ValueError(f"{path} must hold a dict with 'state_dict' and 'hparams' (as save_state_dict writes)")
    return from_state_dict(blob["state_dict"], dtype=dtype, **blob["hparams"])
