"""Generate ``docs/api.md``, the API reference, from analogeq's docstrings.

    python docs/gen_api.py            # rewrite docs/api.md (``make docs``)
    python docs/gen_api.py --check    # exit 1 if docs/api.md is out of date

What it documents, in this order:

1. ``analogeq.__all__`` (the top-level API);
2. the ``__all__`` of every subpackage of ``analogeq`` that defines one (found with ``pkgutil``,
   sorted by name; a new subpackage appears here once it has an ``__all__``);
3. :data:`ENTRY_POINTS`: a few names from plain modules that the CLI, the README and
   ``docs/extending.md`` use directly (``TrainConfig``, ``train``, ``AbstractUpdater``, ...).

For every name: its kind, signature and docstring. Classes also list their public methods and
properties (those defined on the class or on a private ``_Base`` it inherits from; a method
without its own docstring shows the one it overrides). Constants show their value (when short)
and the attribute docstring written below their assignment in the source (the string literal
that follows ``NAME = ...``). The first paragraph of a docstring is rendered as Markdown, the
rest verbatim in a ``text`` block (the docstrings hold ASCII equations and reST tables).

The output depends only on the source: memory addresses are stripped from reprs and everything
is in a fixed order, so ``tests/test_docs.py`` can compare it with the committed file.
"""

from __future__ import annotations

import argparse
import ast
import functools
import importlib
import inspect
import pkgutil
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
API_MD = ROOT / "docs" / "api.md"

ENTRY_POINTS: dict[str, tuple[str, ...]] = {
    "analogeq.hardware.pulsed": ("PulsedUpdater", "attach_devices", "device_hardware"),
    "analogeq.hardware.wires": ("Wires", "transfer", "pair_transfer", "node_voltages", "device_voltages",
                                "sense_currents", "contraction", "contraction_bound"),
    "analogeq.hardware.tile": ("tile_blocks", "tile_grid", "auto_gains"),
    "analogeq.hardware.drift": ("ProgrammedChip", "program_pcm", "chip_at", "accuracy_over_time"),
    "analogeq.devices.presets": ("DevicePreset",),
    "analogeq.devices.inference": ("PCMInference", "compensation_factor"),
    "analogeq.updaters": ("make_optimizer",),
    "analogeq.energy_report": ("energy_report", "format_energy", "energy_line"),
    "analogeq.spice_report": ("run_chip", "spice_report", "NOISE_CHECKS"),
    "analogeq.diagnostics.stability_probe": ("stability_probe", "DENSE_MAX"),
    "analogeq.stability": ("Penalized", "StabilizedUpdater", "StabilityState", "residual_penalty",
                           "jacobian_penalty", "controller_update", "cap_weights", "ema_model"),
}
"""Names outside any ``__all__`` that are documented too (module -> names)."""

_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")
_ROLE = re.compile(r":(?:class|func|meth|data|mod|attr|obj|exc):`~?([^`]+)`")
_MAX_VALUE = 200  # longest constant repr shown in full


class _Raw:
    """An object whose repr is a given string (to print annotations and defaults as written)."""

    def __init__(self, text: str):
        self.text = text

    def __repr__(self) -> str:
        return self.text


# --------------------------------------------------------------------------------------------
# What to document
# --------------------------------------------------------------------------------------------


def public_modules() -> list[tuple[str, tuple[str, ...]]]:
    """``(module name, names)`` for the top-level API, every subpackage with an ``__all__``
    and :data:`ENTRY_POINTS`, in documentation order."""
    import analogeq

    out = [("analogeq", tuple(analogeq.__all__))]
    subpackages = sorted(m.name for m in pkgutil.iter_modules(analogeq.__path__) if m.ispkg)
    for name in subpackages:
        mod = importlib.import_module(f"analogeq.{name}")
        if getattr(mod, "__all__", None):
            out.append((mod.__name__, tuple(mod.__all__)))
    out += [(m, names) for m, names in ENTRY_POINTS.items()]
    return out


def public_names() -> list[tuple[str, str, object]]:
    """``(module, name, object)`` for every documented name."""
    out = []
    for modname, names in public_modules():
        mod = importlib.import_module(modname)
        for name in names:
            out.append((modname, name, getattr(mod, name)))
    return out


# --------------------------------------------------------------------------------------------
# Docstrings
# --------------------------------------------------------------------------------------------


def _module_file(modname: str) -> Path | None:
    spec = importlib.util.find_spec(modname)
    return Path(spec.origin) if spec is not None and spec.origin else None


def _attribute_docs(modname: str) -> tuple[dict[str, str], dict[str, str]]:
    """``(docs, imported)``: the attribute docstrings of a module's top-level assignments, and
    for names it imports with ``from X import name``, the module ``X`` they come from."""
    path = _module_file(modname)
    if path is None or path.suffix != ".py":
        return {}, {}
    tree = ast.parse(path.read_text())
    docs, imported = {}, {}
    body = tree.body
    for node, nxt in zip(body, body[1:] + [None]):
        targets = []
        if isinstance(node, ast.Assign):
            targets = [t.id for t in node.targets if isinstance(t, ast.Name)]
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            targets = [node.target.id]
        if (targets and isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant)
                and isinstance(nxt.value.value, str)):
            for t in targets:
                docs[t] = inspect.cleandoc(nxt.value.value)
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                imported[alias.asname or alias.name] = node.module
    return docs, imported


def attribute_doc(modname: str, name: str, _depth: int = 0) -> str | None:
    """The attribute docstring of ``modname.name``, following ``from X import name`` chains."""
    if _depth > 10:
        return None
    docs, imported = _attribute_docs(modname)
    if name in docs:
        return docs[name]
    if name in imported and imported[name].startswith("analogeq"):
        return attribute_doc(imported[name], name, _depth + 1)
    return None


def _own_class_doc(cls) -> str | None:
    doc = cls.__dict__.get("__doc__")
    if not doc or doc.startswith(cls.__name__ + "("):  # dataclasses invent "Name(field, ...)"
        return None
    return inspect.cleandoc(doc)


def docstring(modname: str, name: str, obj) -> str | None:
    """The docstring a public name is documented with (``None`` when it has none)."""
    if inspect.ismodule(obj):
        return inspect.cleandoc(obj.__doc__) if obj.__doc__ else None
    if inspect.isclass(obj):
        if obj.__name__ != name:  # an alias: its own attribute docstring first
            return attribute_doc(modname, name) or _own_class_doc(obj)
        return _own_class_doc(obj)
    if callable(obj):
        doc = getattr(obj, "__doc__", None)
        return inspect.cleandoc(doc) if doc else None
    return attribute_doc(modname, name)


# --------------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------------


def _clean(text: str) -> str:
    return _ADDRESS.sub("", text)


def _annotation(a):
    if a is inspect.Parameter.empty or a is inspect.Signature.empty:
        return a
    text = a if isinstance(a, str) else inspect.formatannotation(a)
    if len(text) > 1 and text[0] == text[-1] and text[0] in "'\"":  # a forward reference
        text = text[1:-1]
    return _Raw(_clean(text))


def signature(obj, drop_self: bool = False) -> str | None:
    """``(params) -> return`` with annotations as written and addresses stripped; ``None`` when
    Python cannot tell (builtins, exceptions)."""
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):
        return None
    params = []
    for i, p in enumerate(sig.parameters.values()):
        if drop_self and i == 0 and p.name in ("self", "cls"):
            continue
        default = p.default if p.default is inspect.Parameter.empty else _Raw(_clean(repr(p.default)))
        params.append(p.replace(annotation=_annotation(p.annotation), default=default))
    ret = _annotation(sig.return_annotation)
    if ret is not inspect.Signature.empty and repr(ret) == "None":
        ret = inspect.Signature.empty  # "-> None" of generated __init__s says nothing
    return str(sig.replace(parameters=params, return_annotation=ret))


def _wrap_signature(prefix: str, sig: str, width: int = 96) -> str:
    """``prefix + sig``, one parameter per line when it is longer than ``width``."""
    line = prefix + sig
    if len(line) <= width:
        return line
    # split the top-level parameter list at commas outside brackets and quotes
    depth, quote, start, parts = 0, None, 1, []
    close = None
    for i, ch in enumerate(sig):
        if quote:
            if ch == quote:
                quote = None
            continue
        if ch in "'\"":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
            if depth == 0 and ch == ")":
                close = i
                break
        elif ch == "," and depth == 1:
            parts.append(sig[start:i].strip())
            start = i + 1
    if close is None:
        return line
    parts.append(sig[start:close].strip())
    body = "".join(f"    {p},\n" for p in parts if p)
    return f"{prefix}(\n{body}){sig[close + 1:]}"


def _prose(text: str) -> str:
    """reST roles as Markdown code spans (``:class:`Chip``` -> ```Chip```)."""
    return _ROLE.sub(lambda m: f"`{m.group(1)}`", text)


def render_doc(doc: str | None) -> list[str]:
    """A docstring: the first paragraph as Markdown, the rest verbatim in a text block."""
    if not doc:
        return ["*(no docstring)*", ""]
    paragraphs = doc.strip().split("\n\n", 1)
    first = paragraphs[0]
    if first.lstrip().startswith(("===", "---", "::")) or first.startswith(" "):
        first, rest = "", doc.strip()
    else:
        rest = paragraphs[1] if len(paragraphs) > 1 else ""
    out = []
    if first:
        out += [_prose(" ".join(line.strip() for line in first.splitlines())), ""]
    if rest.strip():
        out += ["```text", rest.rstrip(), "```", ""]
    return out


@functools.lru_cache(maxsize=1)
def _documented_as() -> dict[int, str]:
    """``id(object) -> "module.name"`` of every documented name (first occurrence wins)."""
    out: dict[int, str] = {}
    for modname, name, obj in public_names():
        out.setdefault(id(obj), f"{modname}.{name}")
    return out


def _qualname(cls) -> str:
    """How a base class is named: where this page documents it, else ``equinox.Module``,
    ``ValueError``, ``module.Name``."""
    documented = _documented_as().get(id(cls))
    if documented:
        return documented
    if cls.__module__ == "builtins":
        return cls.__qualname__
    top = cls.__module__.split(".")[0]
    try:
        if getattr(importlib.import_module(top), cls.__qualname__) is cls:
            return f"{top}.{cls.__qualname__}"
    except (ImportError, AttributeError):
        pass
    return f"{cls.__module__}.{cls.__qualname__}"


def _public_bases(cls) -> list[str]:
    """Direct bases, with private ``_Base`` classes replaced by their own public bases."""
    out = []
    for b in cls.__bases__:
        if b is object:
            continue
        if b.__name__.startswith("_"):
            out += [n for n in _public_bases(b) if n not in out]
        elif _qualname(b) not in out:
            out.append(_qualname(b))
    return out


def _member_classes(cls) -> list[type]:
    """The class itself and the private analogeq bases whose members it exposes."""
    out = [cls]
    for b in cls.__mro__[1:]:
        if b.__name__.startswith("_") and b.__module__.startswith("analogeq"):
            out.append(b)
    return out


def members(cls) -> list[tuple[str, str, object]]:
    """``(name, kind, object)`` of the public methods and properties a class documents."""
    seen, out = set(), []
    for owner in _member_classes(cls):
        for name, value in owner.__dict__.items():
            if name in seen or (name.startswith("_") and name != "__call__"):
                continue
            if isinstance(value, property):
                kind = "property"
            elif isinstance(value, classmethod):
                kind, value = "classmethod", value.__func__
            elif isinstance(value, staticmethod):
                kind, value = "staticmethod", value.__func__
            elif inspect.isfunction(value):
                kind = "method"
            else:
                continue
            seen.add(name)
            out.append((name, kind, value))
    return out


def _member_doc(cls, name: str, value) -> str | None:
    """A member's own docstring, else the one of the member it overrides."""
    doc = getattr(value.fget if isinstance(value, property) else value, "__doc__", None)
    if doc:
        return inspect.cleandoc(doc)
    for b in cls.__mro__[1:]:
        if name in b.__dict__:
            v = b.__dict__[name]
            v = v.fget if isinstance(v, property) else getattr(v, "__func__", v)
            if getattr(v, "__doc__", None):
                return inspect.cleandoc(v.__doc__)
    return None


def _kind(obj) -> str:
    if inspect.ismodule(obj):
        return "module"
    if inspect.isclass(obj):
        if issubclass(obj, BaseException):
            return "exception"
        return "abstract class" if inspect.isabstract(obj) or obj.__name__.startswith("Abstract") else "class"
    if callable(obj):
        return "function"
    return "constant"


def _value(obj) -> str:
    """A constant's value as shown: its repr when short, mappings of functions or classes by
    their names, else a summary."""
    def short(v):
        return v.__name__ if (inspect.isclass(v) or inspect.isroutine(v)) else _clean(repr(v))

    if isinstance(obj, dict) and all(isinstance(k, str) for k in obj):
        text = "{" + ", ".join(f"{k!r}: {short(v)}" for k, v in obj.items()) + "}"
    else:
        text = _clean(repr(obj))
    if len(text) <= _MAX_VALUE:
        return text
    if isinstance(obj, str):
        return f"<str, {len(obj)} characters>"
    return f"<{type(obj).__name__}, {len(obj)} entries>" if hasattr(obj, "__len__") else f"<{type(obj).__name__}>"


def _anchor(text: str) -> str:
    """GitHub's heading anchor for ``text``."""
    text = text.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def _module_anchor(modname: str) -> str:
    return _anchor(f"module {modname}")


def render_name(modname: str, name: str, obj) -> list[str]:
    """The section of one public name."""
    full = f"{modname}.{name}"
    kind = _kind(obj)
    out = [f"### `{full}`", ""]
    if kind == "module":
        out += [f"*module* — documented in its own section, [`{obj.__name__}`](#{_module_anchor(obj.__name__)}).", ""]
        return out
    if kind == "constant":
        out += ["*constant*", "", "```python", f"{name} = {_value(obj)}", "```", ""]
        out += render_doc(docstring(modname, name, obj))
        return out
    head = f"*{kind}*"
    if inspect.isclass(obj):
        bases = _public_bases(obj)
        if bases:
            head += " — bases: " + ", ".join(f"`{b}`" for b in bases)
        if obj.__name__ != name:
            head += f" — alias of `{obj.__module__}.{obj.__qualname__}`"
    out += [head, ""]
    sig = signature(obj)
    if sig is not None:
        prefix = f"class {name}" if inspect.isclass(obj) else f"def {name}"
        out += ["```python", _wrap_signature(prefix, sig), "```", ""]
    out += render_doc(docstring(modname, name, obj))
    if inspect.isclass(obj):
        mems = members(obj)
        if mems:
            out += ["**Members**", ""]
            for mname, mkind, value in mems:
                if mkind == "property":
                    line = f"- `{mname}` *(property)*"
                else:
                    msig = signature(value, drop_self=mkind != "staticmethod") or "(...)"
                    tag = "" if mkind == "method" else f" *({mkind})*"
                    line = f"- `{mname}{msig}`{tag}"
                doc = _member_doc(obj, mname, value)
                if doc:
                    first, _, rest = doc.partition("\n\n")
                    line += " — " + _prose(" ".join(s.strip() for s in first.splitlines()))
                    out.append(line)
                    if rest.strip():
                        out += ["", "  ```text"] + [("  " + s).rstrip() for s in rest.rstrip().splitlines()] + ["  ```", ""]
                else:
                    out.append(line + " — *(no docstring)*")
            out.append("")
    return out


def render() -> str:
    """The whole of ``docs/api.md``."""
    mods = public_modules()
    out = [
        "# API reference",
        "",
        "<!-- Generated by docs/gen_api.py from the docstrings; do not edit by hand. Run `make docs`. -->",
        "",
        "Generated from the docstrings by [`gen_api.py`](gen_api.py) (`make docs`). It covers "
        "`analogeq.__all__`, the `__all__` of every subpackage, and a few entry points of plain "
        "modules (`TrainConfig`, `train`, `AbstractUpdater`, ...). Units, equations and the "
        "physics behind the names are in [concepts.md](concepts.md); how to add your own "
        "models, devices, estimators and tasks is in [extending.md](extending.md).",
        "",
        "## Modules",
        "",
    ]
    for modname, names in mods:
        out.append(f"- [`{modname}`](#{_module_anchor(modname)}) ({len(names)} names)")
    out.append("")
    for modname, names in mods:
        mod = importlib.import_module(modname)
        out += [f"## Module `{modname}`", ""]
        if mod.__doc__:
            out += render_doc(inspect.cleandoc(mod.__doc__))
        out += [", ".join(f"[`{n}`](#{_anchor(modname + '.' + n)})" for n in names), ""]
        for name in names:
            out += render_name(modname, name, getattr(mod, name))
    text = "\n".join(out)
    text = re.sub(r"\n{3,}", "\n\n", text).rstrip() + "\n"
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if docs/api.md is out of date")
    parser.add_argument("--out", type=Path, default=API_MD, help="output file (default docs/api.md)")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        current = args.out.read_text() if args.out.exists() else ""
        if current != text:
            print(f"{args.out} is out of date: run `make docs`", file=sys.stderr)
            return 1
        return 0
    args.out.write_text(text)
    print(f"wrote {args.out} ({len(text.splitlines())} lines)")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
