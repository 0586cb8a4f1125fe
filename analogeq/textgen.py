"""Sampling text from a trained equilibrium transformer (``analogeq sample``).

Generation is autoregressive: the context (the last ``seq_len`` tokens) is padded on the right to
``seq_len`` tokens, the free phase is relaxed, and the next token is drawn from the logits at the
context's last position. Attention is causal and layer norm and FFN act per position, so the
padding never influences earlier positions: the relaxed states there are exactly those of the
unpadded context.
"""

from __future__ import annotations


import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from analogeq.ep.base import free_phase


@eqx.filter_jit
def _next_logits(model, relaxation, window, pos):
    free = free_phase(model, relaxation, window[None])
    return model.readout(free.state[0])[pos], free.residual[0]


def sample_tokens(model, relaxation, prompt_ids, n: int, *, key, temperature: float = 1.0) -> np.ndarray:
    """``n`` new token ids drawn after ``prompt_ids`` (``(P,)`` ints in ``[0, V)``, ``P >= 1``).

    Args:
        model: an :class:`~analogeq.models.EqTransformer`.
        relaxation: how each context is relaxed (e.g. the run's ``EulerRelaxation``).
        n: tokens to generate (>= 0).
        key: PRNG key of the draws.
        temperature: softmax temperature (> 0; logits are divided by it).

    Returns the generated ids ``(n,)`` (the prompt not included).
    """
    ids = [int(i) for i in np.asarray(prompt_ids).ravel()]
    if not ids:
        raise ValueError("the prompt must hold at least one token")
    if not (isinstance(n, int) and n >= 0):
        raise ValueError(f"n must be an integer >= 0; got {n!r}")
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0; got {temperature!r}")
    v, t = model.vocab_size, model.seq_len
    bad = [i for i in ids if not 0 <= i < v]
    if bad:
        raise ValueError(f"prompt token ids must lie in [0, {v}); got {bad[:5]}")
    out = []
    for k in range(n):
        ctx = ids[-t:]
        window = jnp.asarray(ctx + [ctx[-1]] * (t - len(ctx)), jnp.int32)
        logits, _ = _next_logits(model, relaxation, window, jnp.asarray(len(ctx) - 1))
        nxt = int(jax.random.categorical(jax.random.fold_in(key, k), logits / temperature))
        ids.append(nxt)
        out.append(nxt)
    return np.asarray(out, np.int32)


def sample_text(run_dir, prompt: str, n: int, *, seed: int = 0, temperature: float = 1.0) -> str:
    """Continue ``prompt`` by ``n`` characters with the char-LM block trained in ``run_dir``
    (its ``config.toml`` and checkpoint; the vocabulary is rebuilt from the run's ``text_path``).
    Returns the prompt followed by the generated text."""
    from analogeq.data.text import read_text
    from analogeq.runs import load_run
    from analogeq.stability import ema_model

    run = load_run(run_dir)
    cfg = run.config
    if cfg.model != "eqtransformer" or cfg.task != "charlm":
        raise ValueError(f"sampling needs a run of model 'eqtransformer' on task 'charlm'; {run_dir} holds "
                         f"model {cfg.model!r} on task {cfg.task!r}")
    model, parts = ema_model(run.model, run.state), run.parts
    _, vocab = read_text(cfg.text_path)
    ids = vocab.encode(prompt) if prompt else np.asarray([0], np.int32)
    new = sample_tokens(model, parts.relaxation, ids, n, key=jax.random.PRNGKey(seed), temperature=temperature)
    return prompt + vocab.decode(new)


def cmd_sample(args) -> int:
    print(sample_text(args.run_dir, args.prompt, args.n, seed=args.seed, temperature=args.temperature))
    return 0


def register(subparsers) -> None:
    """Add ``analogeq sample RUN_DIR --prompt ... --n ...`` to the CLI's subparsers."""
    p = subparsers.add_parser("sample", help="sample text from a char-LM equilibrium transformer",
                              description="Continue --prompt by --n characters with the block trained in "
                              "RUN_DIR (the --out directory of 'analogeq train --model eqtransformer "
                              "--task charlm'). Each character relaxes the free phase on the last "
                              "seq_len characters and draws from the softmax at the last position.")
    from analogeq import cli_types as T

    p.add_argument("run_dir", type=T.in_dir, help="run directory with config.toml and checkpoint.eqx")
    p.add_argument("--prompt", default="\n", help="text to continue (characters of the training text)")
    p.add_argument("--n", type=T.integer(1, 100_000), default=200, help="characters to generate, 1..100000 (default 200)")
    # Softmax of logits / temperature: below ~1e-3 it is argmax (and overflows), above ~1e3 uniform.
    p.add_argument("--temperature", type=T.number(1e-3, 1e3), default=1.0,
                   help="softmax temperature in [0.001, 1000] (default 1.0)")
    p.add_argument("--seed", type=T.seed, default=0, help="seed of the draws (default 0)")
    p.set_defaults(func=cmd_sample)
