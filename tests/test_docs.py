"""The docs in ``docs/``: the API reference is generated from the current docstrings, every public
name has a docstring, links resolve, and the commands, TOML and Python shown in the docs are
valid for the current code."""

from __future__ import annotations

import ast
import contextlib
import importlib.util
import io
import re
import shlex
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PAGES = sorted(DOCS.glob("*.md"))


FENCE = re.compile(r"^(?P<indent>[ \t]*)```(?P<lang>[\w+-]*)[^\n]*\n(?P<body>.*?)^(?P=indent)```[ \t]*$",
                   re.M | re.S)
LINK = re.compile(r"(?<!!)\[[^\]\n]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
SHELL = {"", "bash", "sh", "shell", "console"}


@pytest.fixture(scope="module")
def gen_api():
    spec = importlib.util.spec_from_file_location("gen_api", DOCS / "gen_api.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def blocks(text: str) -> list[tuple[str, str]]:
    """``(language, body)`` of every fenced code block (indented fences included, dedented)."""
    out = []
    for m in FENCE.finditer(text):
        indent = len(m.group("indent"))
        body = "\n".join(line[indent:] for line in m.group("body").splitlines())
        out.append((m.group("lang").lower(), body))
    return out


def without_code(text: str) -> str:
    """``text`` with fenced blocks and inline code spans removed."""
    text = FENCE.sub("", text)
    return re.sub(r"(`+)(?:(?!\1).)+?\1", "", text)


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    heading = re.sub(r"`", "", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", heading).replace(" ", "-")


def anchors(text: str) -> set[str]:
    """The anchors of a Markdown page's headings (GitHub numbering of duplicates)."""
    seen: dict[str, int] = {}
    out = set()
    for line in FENCE.sub("", text).splitlines():
        m = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not m:
            continue
        slug = _slug(m.group(1))
        n = seen.get(slug, 0)
        out.add(slug if n == 0 else f"{slug}-{n}")
        seen[slug] = n + 1
    return out


def commands(text: str):
    """``(page line, argv)`` of every ``analogeq ...`` command in the page's shell code blocks,
    continuation lines joined and comments dropped."""
    for lang, body in blocks(text):
        if lang not in SHELL:
            continue
        joined = re.sub(r"\\\n", " ", body)
        for line in joined.splitlines():
            line = line.strip()
            if line.startswith("$ "):
                line = line[2:]
            tokens = shlex.split(line, comments=True)
            if tokens and Path(tokens[0]).name == "analogeq":
                yield line, tokens[1:]


def test_pages_exist():
    names = {p.name for p in PAGES}
    assert {"README.md", "getting-started.md", "concepts.md", "extending.md", "api.md", "results.md",
            "references.md"} <= names


def test_api_md_is_up_to_date(gen_api):
    assert (DOCS / "api.md").read_text() == gen_api.render(), (
        "docs/api.md is out of date with the docstrings: run `make docs`")


def test_every_public_name_has_a_docstring(gen_api):
    missing = [f"{mod}.{name}" for mod, name, obj in gen_api.public_names()
               if not gen_api.docstring(mod, name, obj)]
    assert not missing, (f"public names without a docstring: {missing} (a constant's docstring is the "
                         "string literal on the line after its assignment)")


def test_api_render_is_deterministic(gen_api):
    text = gen_api.render()
    assert " at 0x" not in text
    assert text == gen_api.render()


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_relative_links_resolve(page):
    text = page.read_text()
    bad = []
    for target in LINK.findall(without_code(text)):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            bad.append(f"{target} (no file {dest.relative_to(ROOT) if dest.is_relative_to(ROOT) else dest})")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest.read_text()):
            bad.append(f"{target} (no heading #{anchor} in {dest.name})")
    assert not bad, f"{page.name}: broken links: {bad}"


def test_cli_commands_in_docs_exist_and_parse():
    from analogeq.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    known = set(sub.choices)
    checked, bad = set(), []
    for page in PAGES:
        text = page.read_text()
        for line, argv in commands(text):
            if not argv or argv[0].startswith("-"):
                continue
            name = argv[0]
            if name not in known:
                bad.append(f"{page.name}: `{line}`: no subcommand {name!r} (have {sorted(known)})")
                continue
            err = io.StringIO()
            try:
                with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
                    build_parser().parse_args(argv)
            except SystemExit as e:
                if e.code not in (0, None):
                    bad.append(f"{page.name}: `{line}`: {err.getvalue().strip().splitlines()[-1]}")
            checked.add(name)
        # commands named in prose (inline code): the subcommand must exist
        for span in re.findall(r"`(analogeq [^`\n]+)`", FENCE.sub("", text)):
            tokens = span.split()
            name = tokens[1] if len(tokens) > 1 else ""
            if re.fullmatch(r"[a-z][a-z-]*", name) and name not in known:
                bad.append(f"{page.name}: `{span}`: no subcommand {name!r}")
    assert not bad, "\n".join(bad)
    # the getting-started page shows every subcommand the CLI has
    assert known - checked == set(), f"subcommands without an example in the docs: {sorted(known - checked)}"


def test_toml_blocks_are_valid():
    from analogeq.config import TrainConfig
    from analogeq.hardware.config import SECTIONS, ChipConfig

    n = 0
    for page in PAGES:
        for lang, body in blocks(page.read_text()):
            if lang != "toml":
                continue
            d = tomllib.loads(body)  # raises on invalid TOML
            n += 1
            if "sweep" in d:
                try:
                    from analogeq.sweep.spec import SweepSpec
                except ImportError:  # not landed yet
                    continue
                SweepSpec.from_dict(d)
            elif "model" in d:  # a device preset (an example model may not be registered)
                assert {"name", "description", "params", "sources"} <= set(d), page.name
                assert set(d["params"]) <= set(d["sources"]), f"{page.name}: every number needs a source"
            elif set(d) <= set(SECTIONS):
                ChipConfig.from_dict(d)
            else:
                TrainConfig.from_dict(d.get("train", d))
    assert n > 0


def test_python_blocks_are_valid_syntax():
    for page in PAGES:
        if page.name == "api.md":  # its python blocks are signatures, not code
            continue
        for lang, body in blocks(page.read_text()):
            if lang == "python":
                try:
                    ast.parse(body)
                except SyntaxError as e:
                    pytest.fail(f"{page.name}: python block does not parse: {e}\n{body}")
