"""The GGUF-to-checkpoint cache (`implicit_reasoning.gguf_convert`): converted once, safe when two processes ask at
once, and a failed conversion leaves nothing that looks finished. The real conversion of the SmolLM2 GGUF (logits
bit-identical) is in test_real_model.py; here the conversion is replaced by a fake that writes a marker file."""

import threading
import time

import pytest

from implicit_reasoning import gguf_convert


@pytest.fixture
def source(tmp_path):
    path = tmp_path / "model.Q4_1.gguf"
    path.write_bytes(b"GGUF" + bytes(range(256)) * 4)
    return path


def _fake_converter(calls, delay=0.0, fail=False):
    def convert(source, output_dir):
        calls.append(str(output_dir))
        (output_dir / "model.safetensors").write_text("weights")
        time.sleep(delay)
        if fail:
            raise RuntimeError("killed half-way")
        (output_dir / gguf_convert.COMPLETE_MARKER).write_text("{}")
        return output_dir

    return convert


def test_two_callers_at_once_convert_once_and_get_the_same_directory(source, tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(gguf_convert, "convert_gguf", _fake_converter(calls, delay=0.5))
    found = []
    threads = [threading.Thread(target=lambda: found.append(gguf_convert.cached_checkpoint(source, tmp_path / "c")))
               for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(calls) == 1 and len(found) == 2 and found[0] == found[1]
    assert found[0].name == f"model.Q4_1-{gguf_convert.file_digest(source)[:12]}"
    assert gguf_convert.is_complete(found[0]) and not list((tmp_path / "c").glob("*.tmp-*"))
    assert gguf_convert.cached_checkpoint(source, tmp_path / "c") == found[0] and len(calls) == 1  # cached


def test_a_failed_conversion_leaves_nothing_that_looks_finished(source, tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(gguf_convert, "convert_gguf", _fake_converter(calls, fail=True))
    with pytest.raises(RuntimeError, match="killed half-way"):
        gguf_convert.cached_checkpoint(source, tmp_path)
    assert [p.name for p in tmp_path.iterdir() if p.is_dir()] == []  # neither the target nor the temp dir
    # a killed process leaves its temp dir; an unfinished target (no marker) is not trusted either
    digest = gguf_convert.file_digest(source)[:12]
    (tmp_path / f"model.Q4_1-{digest}.tmp-stale").mkdir()
    (tmp_path / f"model.Q4_1-{digest}").mkdir()
    monkeypatch.setattr(gguf_convert, "convert_gguf", _fake_converter(calls))
    done = gguf_convert.cached_checkpoint(source, tmp_path)
    assert gguf_convert.is_complete(done) and len(calls) == 2
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == [done.name]


def test_a_changed_file_converts_again(source, tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(gguf_convert, "convert_gguf", _fake_converter(calls))
    first = gguf_convert.cached_checkpoint(source, tmp_path)
    source.write_bytes(b"GGUF another")
    assert gguf_convert.cached_checkpoint(source, tmp_path) != first and len(calls) == 2


def test_sources_and_their_errors(source, tmp_path, monkeypatch):
    assert gguf_convert.resolve_source(str(source)) == source
    with pytest.raises(FileNotFoundError, match="package 'no_such_package_xyz' is not installed"):
        gguf_convert.resolve_source("no_such_package_xyz:model.gguf")
    with pytest.raises(FileNotFoundError, match="has no file 'missing.gguf'"):
        gguf_convert.resolve_source("pytest:missing.gguf")  # an installed package without that file
    with pytest.raises(FileNotFoundError, match="does not exist"):
        gguf_convert.resolve_source(str(tmp_path / "missing.gguf"))
    monkeypatch.setenv(gguf_convert.CACHE_ENV, str(tmp_path / "cache"))
    assert gguf_convert.default_cache_dir() == tmp_path / "cache"


def test_the_command_refuses_a_non_empty_output_dir(source, tmp_path, capsys):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "x").write_text("")
    with pytest.raises(SystemExit):
        gguf_convert.main([str(source), "--output_dir", str(tmp_path / "out")])
    assert "is not empty" in capsys.readouterr().err
