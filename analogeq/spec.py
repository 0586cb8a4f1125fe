"""One validated-spec base and one TOML reader/writer for every configuration of the package.

A configuration is a frozen dataclass deriving from :class:`Spec` whose fields are declared with
the helpers below (:func:`real`, :func:`integer`, :func:`boolean`, :func:`choice`, :func:`text`,
:func:`ints`, :func:`section`). Each helper stores a :class:`Field` in the dataclass field's
metadata: its help text, unit, type and allowed values. Construction validates every field the
same way:

* types are checked: no ``bool`` where a number belongs, no number or string where a ``bool``
  belongs, integers are integers (``2.0`` is not a count), strings are strings;
* numbers are finite and inside their bounds; choices are one of the allowed names;
* sizes that drive work (step counts, sample counts, layer widths) have an upper bound, so a typo
  cannot turn into a hang or an overflow;
* unknown keys and unknown tables are rejected, naming the allowed ones.

Every failure raises :class:`ConfigError` (a ``ValueError``) with one line naming the file (when
read from one), the dotted field, the value and what is allowed. :func:`read_toml` turns a
missing file, a directory, unreadable bytes and TOML syntax errors into the same one line.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import os
import tomllib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

__all__ = [
    "ConfigError",
    "Field",
    "Spec",
    "boolean",
    "choice",
    "format_value",
    "integer",
    "ints",
    "read_toml",
    "real",
    "section",
    "text",
    "toml_value",
]


class ConfigError(ValueError):
    """An invalid configuration value, key, table or file. The message is one line naming the
    file (when read from one), the dotted field, the value and what is allowed."""


def format_value(value: Any) -> str:
    """Readable value for messages: plain Python numbers, the type shown for anything else."""
    if isinstance(value, bool) or value is None:
        return repr(value)
    if isinstance(value, numbers.Integral):
        return repr(int(value))
    if isinstance(value, numbers.Real):
        return repr(float(value))
    return f"{value!r} ({type(value).__name__})"


def _typed(value: Any) -> str:
    return f"{value!r} ({type(value).__name__})"


# --------------------------------------------------------------------------------------------
# Field specifications
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Field:
    """How one configuration field is validated and documented (kept in the dataclass field's
    metadata under ``"spec"``).

    Attributes:
        kind: ``"real"``, ``"int"``, ``"bool"``, ``"choice"``, ``"str"`` or ``"ints"`` (a tuple
            of integers, e.g. layer sizes).
        doc: one-line help text (the CLI's ``--help`` and the TOML writer's comments).
        unit: SI unit of a number (``""``: dimensionless).
        gt, ge, lt, le: bounds of a number (of each element for ``"ints"``).
        also: integers allowed besides the bounds (``0`` meaning *off*, e.g. ``n_levels``).
        optional: ``None`` allowed (its meaning stated in ``doc``).
        choices: allowed names of a ``"choice"``, or a zero-argument callable returning them
            (for registries filled at import time).
        nonempty: a ``"str"`` must not be empty.
        max_len: most elements of an ``"ints"`` tuple.
        allowed: description of the allowed values replacing the generated one.
    """

    kind: str
    doc: str
    unit: str = ""
    gt: float | None = None
    ge: float | None = None
    lt: float | None = None
    le: float | None = None
    also: tuple = ()
    optional: bool = False
    choices: Sequence[str] | Callable[[], Sequence[str]] = ()
    nonempty: bool = False
    max_len: int | None = None
    allowed: str = ""

    def allowed_choices(self) -> tuple[str, ...]:
        c = self.choices() if callable(self.choices) else self.choices
        return tuple(c)

    def _range(self) -> str:
        if self.kind in ("int", "ints") and self.ge is not None and self.le is not None:
            return f"in {int(self.ge)}..{int(self.le)}"
        lo = hi = None
        if self.gt is not None:
            lo = f"({self.gt:g}"
        elif self.ge is not None:
            lo = f"[{self.ge:g}"
        if self.lt is not None:
            hi = f"{self.lt:g})"
        elif self.le is not None:
            hi = f"{self.le:g}]"
        if lo and hi:
            return f"in {lo}, {hi}"
        if lo:
            return ("> " if lo[0] == "(" else ">= ") + lo[1:]
        if hi:
            return ("< " if hi[-1] == ")" else "<= ") + hi[:-1]
        return ""

    def constraint(self) -> str:
        """Human description of the allowed values, with the unit."""
        if self.allowed:
            text = self.allowed
        elif self.kind == "bool":
            text = "a bool (true/false)"
        elif self.kind == "choice":
            text = f"one of {list(self.allowed_choices())}"
        elif self.kind == "str":
            text = "a non-empty string" if self.nonempty else "a string"
        elif self.kind == "int":
            rng = self._range()
            text = "an integer" + (f" {rng}" if rng else "")
            if self.also:
                text += "".join(f" or {a}" for a in self.also)
        elif self.kind == "ints":
            rng = self._range()
            n = f"1..{self.max_len}" if self.max_len else ">= 1"
            text = f"a list of {n} integers" + (f" each {rng}" if rng else "")
        else:
            rng = self._range()
            text = rng or "a finite real number"
            if self.unit:
                text += f" {self.unit}"
        if self.optional:
            text += " or None"
        return text

    def _in_bounds(self, value: float) -> bool:
        return not (
            (self.gt is not None and not value > self.gt)
            or (self.ge is not None and not value >= self.ge)
            or (self.lt is not None and not value < self.lt)
            or (self.le is not None and not value <= self.le)
        )

    def _fail(self, path: str, value: Any, typed: bool = False) -> ConfigError:
        got = _typed(value) if typed else format_value(value)
        allowed = self.constraint()
        if typed and self.kind == "real":
            allowed = f"a finite real number, {allowed}"
        elif typed and self.kind == "int" and not allowed.startswith("an integer"):
            allowed = f"an integer: {allowed}"
        return ConfigError(f"{path} must be {allowed} ({self.doc}); got {got}")

    def validate(self, path: str, value: Any) -> Any:
        """``value`` coerced to a plain Python type, or :class:`ConfigError` naming ``path``."""
        if value is None and self.optional:
            return None
        if self.kind == "bool":
            if isinstance(value, np.bool_):
                value = bool(value)
            if not isinstance(value, bool):
                raise self._fail(path, value, typed=True)
            return value
        if self.kind == "choice":
            allowed = self.allowed_choices()
            if not isinstance(value, str) or value not in allowed:
                name = path.rpartition(".")[2]
                got = repr(value) if isinstance(value, str) else format_value(value)
                raise ConfigError(f"{path}: unknown {name} {got}; choose one of "
                                  f"{list(allowed)} ({self.doc})")
            return value
        if self.kind == "str":
            if not isinstance(value, (str, os.PathLike)) or (self.nonempty and not str(value)):
                raise self._fail(path, value, typed=True)
            return str(value)
        if self.kind == "int":
            return self._int(path, value, value)
        if self.kind == "ints":
            if isinstance(value, numbers.Integral) and not isinstance(value, bool):
                value = (value,)  # one layer size given bare
            if (not isinstance(value, (list, tuple, np.ndarray)) or len(value) == 0
                    or (self.max_len is not None and len(value) > self.max_len)):
                raise self._fail(path, value, typed=True)
            return tuple(self._int(path, v, value) for v in value)
        # real
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise self._fail(path, value, typed=True)
        try:
            value = float(value)
        except OverflowError:  # an integer beyond float range, e.g. 10**400 in TOML
            raise self._fail(path, value) from None
        if not math.isfinite(value):
            raise ConfigError(f"{path} must be finite, {self.constraint()} ({self.doc}); got {value!r}")
        if not self._in_bounds(value):
            raise self._fail(path, value)
        return value

    def _int(self, path: str, v: Any, whole: Any) -> int:
        if isinstance(v, bool) or not isinstance(v, numbers.Integral):
            raise self._fail(path, whole, typed=True)
        v = int(v)
        if v not in self.also and not self._in_bounds(v):
            raise self._fail(path, whole if self.kind == "ints" else v)
        return v


def _field(default: Any, spec: Field) -> Any:
    return dataclasses.field(default=default, metadata={"spec": spec})


def real(default: float | None, doc: str, unit: str = "", *, gt=None, ge=None, lt=None, le=None,
         optional: bool = False) -> Any:
    """A finite real number (``bool`` rejected) within the given bounds, in ``unit``."""
    return _field(default, Field("real", doc, unit, gt=gt, ge=ge, lt=lt, le=le, optional=optional))


def integer(default: int, doc: str, *, ge: int | None = None, le: int | None = None,
            also: tuple[int, ...] = (), unit: str = "", allowed: str = "") -> Any:
    """An integer (``bool`` and ``2.0`` rejected) in ``[ge, le]`` or one of ``also``; ``le``
    bounds any count that drives work."""
    return _field(default, Field("int", doc, unit, ge=ge, le=le, also=tuple(also), allowed=allowed))


def boolean(default: bool, doc: str) -> Any:
    """``true`` or ``false`` (``1``, ``"no"`` rejected)."""
    return _field(default, Field("bool", doc))


def choice(default: str, doc: str, choices: Sequence[str] | Callable[[], Sequence[str]]) -> Any:
    """One of ``choices`` (a sequence, or a callable returning one, read at validation time)."""
    return _field(default, Field("choice", doc, choices=choices if callable(choices) else tuple(choices)))


def text(default: str, doc: str, *, nonempty: bool = False) -> Any:
    """A string (a path is accepted and stored as its string)."""
    return _field(default, Field("str", doc, nonempty=nonempty))


def ints(default: tuple[int, ...], doc: str, *, ge: int | None = None, le: int | None = None,
         max_len: int | None = None) -> Any:
    """A tuple of 1..``max_len`` integers, each in ``[ge, le]`` (a TOML array; one integer is
    read as a one-element tuple)."""
    return _field(tuple(default), Field("ints", doc, ge=ge, le=le, max_len=max_len))


def section(cls: type[Spec]) -> Any:
    """A nested section (a TOML table) of type ``cls``, defaulting to ``cls()``."""
    return dataclasses.field(default_factory=cls, metadata={"section": cls})


# --------------------------------------------------------------------------------------------
# TOML
# --------------------------------------------------------------------------------------------


def read_toml(path: str | os.PathLike, what: str = "config") -> dict[str, Any]:
    """Parse a TOML file; a missing file, a directory, unreadable bytes or a syntax error raise
    :class:`ConfigError` in one line naming the file."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{path}: is a directory; expected a {what} TOML file")
    if not path.exists():
        raise ConfigError(f"{path}: no such file; expected a {what} TOML file")
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: invalid TOML: {e}") from e
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: invalid TOML: not UTF-8 text ({e.reason} at byte {e.start})") from e
    except OSError as e:
        raise ConfigError(f"{path}: cannot read the {what} file: {e.strerror or e}") from e


def toml_value(value: Any) -> str:
    """One TOML value (bool, int, finite float, string, list/tuple of those)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real):
        if not math.isfinite(value):
            raise ConfigError(f"cannot write the non-finite number {value!r} to TOML")
        return repr(float(value))  # shortest round-trip repr is valid TOML
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    raise ConfigError(f"cannot write {format_value(value)} to TOML")


# --------------------------------------------------------------------------------------------
# The base class
# --------------------------------------------------------------------------------------------


class Spec:
    """Base of the validated, immutable configurations (subclasses are frozen dataclasses).

    ``_section`` is the dotted prefix of the class's fields in messages and its TOML table name
    (``"crossbar"`` -> ``crossbar.G_max``). Subclasses add cross-field checks in :meth:`_check`
    and may omit derived values from :meth:`to_dict` through :meth:`_derived`.
    """

    _section: ClassVar[str] = ""
    _what: ClassVar[str] = "config"  # what the file holds, for file errors
    _header: ClassVar[tuple[str, ...]] = ()  # comment lines atop to_toml's text

    # ---- validation --------------------------------------------------------------------------

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            if "spec" in f.metadata:
                object.__setattr__(self, f.name, f.metadata["spec"].validate(self._path(f.name),
                                                                             getattr(self, f.name)))
            elif "section" in f.metadata:
                cls, value = f.metadata["section"], getattr(self, f.name)
                if isinstance(value, Mapping):
                    object.__setattr__(self, f.name, cls.from_dict(value))
                elif not isinstance(value, cls):
                    raise ConfigError(f"{f.name} must be a {cls.__name__} or a mapping of its fields "
                                      f"({', '.join(cls.field_names())}); got {format_value(value)}")
        self._check()

    def _check(self) -> None:
        """Cross-field checks (subclasses)."""

    @classmethod
    def _path(cls, name: str) -> str:
        """Dotted name of field ``name`` in messages."""
        return f"{cls._section}.{name}" if cls._section else name

    def _derived(self, name: str) -> bool:
        """Whether field ``name`` holds a value derived from others (left out of :meth:`to_dict`)."""
        return False

    # ---- introspection -----------------------------------------------------------------------

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        """Names of the validated fields and sections, in declaration order."""
        return tuple(f.name for f in dataclasses.fields(cls)
                     if "spec" in f.metadata or "section" in f.metadata)

    @classmethod
    def sections(cls) -> dict[str, type[Spec]]:
        """Nested section name -> section class."""
        return {f.name: f.metadata["section"] for f in dataclasses.fields(cls) if "section" in f.metadata}

    @classmethod
    def spec(cls, name: str) -> Field:
        """The :class:`Field` (doc, unit, bounds) of one field."""
        for f in dataclasses.fields(cls):
            if f.name == name and "spec" in f.metadata:
                return f.metadata["spec"]
        raise KeyError(name)

    @classmethod
    def options(cls) -> Iterator[tuple[str, Any, str, Field]]:
        """``(name, default, help, field)`` for every leaf field (nested sections' fields by
        their dotted names), the material of command-line options."""
        for f in dataclasses.fields(cls):
            if "spec" in f.metadata:
                yield f.name, f.default, f.metadata["spec"].doc, f.metadata["spec"]
            elif "section" in f.metadata:
                for name, default, doc, spec in f.metadata["section"].options():
                    yield f"{f.name}.{name}", default, doc, spec

    # ---- dicts -------------------------------------------------------------------------------

    @classmethod
    def _check_keys(cls, d: Any, where: str) -> None:
        if not isinstance(d, Mapping):
            kind = "a table" if cls._section else "a mapping (TOML tables and keys)"
            raise ConfigError(f"{where} must be {kind} of {', '.join(cls.field_names())}; "
                              f"got {format_value(d)}")
        allowed = cls.field_names()
        sections = cls.sections()
        for key, value in d.items():
            if key in allowed:
                continue
            if sections and isinstance(value, Mapping):
                raise ConfigError(f"unknown section [{key}]; allowed sections: {', '.join(sections)}")
            raise ConfigError(f"unknown key '{cls._path(key)}' in {where}; allowed keys: "
                              f"{', '.join(allowed)}")

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]):
        """Build from ``{field: value}`` (nested mappings for sections, e.g. parsed TOML).
        Missing fields take their defaults; unknown keys and tables raise :class:`ConfigError`
        naming them and the allowed names."""
        where = f"section [{cls._section}]" if cls._section else f"{cls._what}"
        cls._check_keys(d, where)
        sections = cls.sections()
        kwargs = {k: sections[k].from_dict(v) if k in sections else v for k, v in d.items()}
        return cls(**kwargs)

    def to_dict(self) -> dict[str, Any]:
        """``{field: value}`` (nested dicts for sections); ``None`` and derived fields are left
        out so the dict is TOML-representable and ``from_dict(to_dict())`` round-trips."""
        out: dict[str, Any] = {}
        for name in self.field_names():
            value = getattr(self, name)
            if isinstance(value, Spec):
                out[name] = value.to_dict()
            elif value is None or self._derived(name):
                continue
            else:
                out[name] = list(value) if isinstance(value, tuple) else value
        return out

    def replace(self, **changes: Any):
        """A new, validated config with ``changes`` applied. Keys are field names, dotted
        ``"section.field"`` names, or a section name whose value is a section instance (replaces
        it) or a mapping of its fields (updates them). Derived fields are re-derived."""
        d = self.to_dict()
        sections = self.sections()
        for key, value in changes.items():
            head, dot, rest = key.partition(".")
            if dot:
                if head not in sections:
                    what = f"sections {', '.join(sections)}" if sections else "no sections"
                    raise ConfigError(f"unknown config field {key!r}; keys are 'section.field' with {what}")
                cls = sections[head]
                if rest not in cls.field_names():
                    raise ConfigError(f"unknown key '{key}' in section [{head}]; allowed keys: "
                                      f"{', '.join(cls.field_names())}")
                d[head][rest] = value
            elif head in sections:
                cls = sections[head]
                if isinstance(value, cls):
                    d[head] = value.to_dict()
                elif isinstance(value, Mapping):
                    d[head].update(value)
                else:
                    raise ConfigError(f"{head} must be replaced by a {cls.__name__} or a mapping "
                                      f"of its fields; got {format_value(value)}")
            elif head in self.field_names():
                d[head] = value
            else:
                raise ConfigError(f"unknown config field {key!r}; allowed: {', '.join(self.field_names())}")
        return type(self).from_dict(d)

    # ---- files -------------------------------------------------------------------------------

    @classmethod
    def from_toml(cls, path: str | os.PathLike):
        """Load a TOML file; every error is one line naming the file."""
        data = read_toml(path, cls._what)
        try:
            return cls.from_dict(data)
        except ConfigError as e:
            raise ConfigError(f"{path}: {e}") from e

    def toml_lines(self) -> list[str]:
        """The body of :meth:`to_toml`: ``key = value  # [unit] doc`` lines, one table per
        section."""
        lines: list[str] = []
        for name, value in self.to_dict().items():
            if isinstance(value, dict):
                continue
            spec = self.spec(name)
            unit = f"[{spec.unit}] " if spec.unit else ""
            lines.append(f"{name} = {toml_value(value)}  # {unit}{spec.doc}")
        for name in self.sections():
            lines += ["", f"[{name}]"] + getattr(self, name).toml_lines()
        return lines

    def to_toml(self, path: str | os.PathLike | None = None, header: Sequence[str] = ()) -> str:
        """TOML text (comments carry units and help, ``header`` or the class's ``_header``
        lines come first); written to ``path`` if given, and ``from_toml(path)`` returns an
        equal config."""
        lines = [f"# {h}" for h in (tuple(header) or self._header)] + self.toml_lines()
        text_ = "\n".join(lines).lstrip("\n") + "\n"
        if path is not None:
            Path(path).write_text(text_)
        return text_
