"""The persistent compilation cache's settings: ``$ANALOGEQ_COMPILE_CACHE_MIN_SECONDS`` is
honoured by :func:`compile_cache.enable` (an explicit argument wins), a bad value is refused in
one line naming the variable, and :func:`compile_cache.settings` hands a process's settings on
(to a sweep's Dask workers)."""

from __future__ import annotations

import jax
import pytest

from analogeq import cli, compile_cache

ENV = compile_cache.MIN_SECONDS_ENV


@pytest.fixture
def restore_jax_cache():
    """The test process's cache settings (conftest's), put back after the test."""
    saved = compile_cache.settings()
    yield
    if saved is None:
        jax.config.update("jax_compilation_cache_dir", None)
    else:
        compile_cache.enable(*saved)


def test_min_seconds_defaults_to_one_second(monkeypatch):
    monkeypatch.delenv(ENV, raising=False)
    assert compile_cache.min_seconds() == compile_cache.DEFAULT_MIN_SECONDS == 1.0


def test_enable_honours_the_min_seconds_override(monkeypatch, tmp_path, restore_jax_cache):
    monkeypatch.setenv(ENV, " 2.5 ")
    assert compile_cache.enable(tmp_path) == tmp_path
    assert compile_cache.settings() == (str(tmp_path), 2.5)
    assert jax.config.jax_persistent_cache_min_compile_time_secs == 2.5
    compile_cache.enable(tmp_path, min_compile_seconds=0.0)  # an explicit argument wins
    assert compile_cache.settings() == (str(tmp_path), 0.0)


@pytest.mark.parametrize("bad", ["fast", "-1", "nan", "inf", "1s"])
def test_bad_min_seconds_is_refused_in_one_line(monkeypatch, tmp_path, bad, restore_jax_cache):
    monkeypatch.setenv(ENV, bad)
    before = compile_cache.settings()
    with pytest.raises(ValueError) as err:
        compile_cache.enable(tmp_path)
    msg = str(err.value)
    assert "\n" not in msg and f"{ENV}={bad!r}" in msg and "number of seconds >= 0" in msg
    assert compile_cache.settings() == before  # nothing changed


def test_cli_reports_a_bad_min_seconds_in_one_line(monkeypatch, tmp_path, capsys, restore_jax_cache):
    monkeypatch.setenv(ENV, "fast")
    assert cli.main(["train", "--out", str(tmp_path / "run"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"analogeq train: error: {ENV}='fast': ")
    assert not (tmp_path / "run" / "summary.json").exists()
