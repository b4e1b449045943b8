"""Packaging for ``implicit-reasoning`` (import name ``implicit_reasoning``).

The version is read from ``implicit_reasoning/__init__.py`` with a regex so that
building or inspecting the package never imports it (and so never imports torch).

DeepSpeed is deliberately *not* a core requirement: it ships as an sdist whose
``setup.py`` imports torch, so pip's isolated build environment would download an
unpinned (CUDA) torch.  Install torch first, then
``DS_BUILD_OPS=0 pip install --no-build-isolation deepspeed`` (see README).

The shipped configs live once, in the repository's ``configs/``; ``package_dir`` maps that
folder into the package as ``implicit_reasoning/configs`` (YAML and JSON as package data), so
the wheel carries them and ``implicit_reasoning.config_files`` finds them by name. Keeping
``configs/`` where it is (rather than moving it into the package behind a symlink) leaves every
path that scripts, tests and docs use unchanged.
"""

import os
import re

from setuptools import find_packages, setup

HERE = os.path.abspath(os.path.dirname(__file__))


def read_version():
    path = os.path.join(HERE, "implicit_reasoning", "__init__.py")
    with open(path, encoding="utf-8") as f:
        match = re.search(r"""^__version__\s*=\s*["']([^"']+)["']""", f.read(), re.MULTILINE)
    if match is None:
        raise RuntimeError(f"could not find __version__ in {path}")
    return match.group(1)


def read_long_description():
    path = os.path.join(HERE, "README.md")
    if not os.path.isfile(path):
        return ""
    with open(path, encoding="utf-8") as f:
        return f.read()


INSTALL_REQUIRES = [
    "torch>=2.4",
    "transformers>=4.56",
    "trl>=0.20",
    "accelerate>=1.0",
    "peft>=0.13",
    "datasets>=3.0",
    "wandb",
    "python-dotenv",
    "math-verify",
    "matplotlib",
    "pyyaml",
    "tqdm",
]

EXTRAS_DEEPSPEED = ["deepspeed"]  # install with --no-build-isolation, after torch
EXTRAS_FLASH = ["flash-attn"]  # needs CUDA to build
EXTRAS_VLLM = ["vllm"]  # needs CUDA

EXTRAS_TENSORBOARD = ["tensorboard"]  # report_to="tensorboard" (the tests read its event files)

EXTRAS_REQUIRE = {
    "dev": ["pytest", "pytest-timeout", "build", "twine", "gguf", *EXTRAS_TENSORBOARD],  # gguf: the real-model tests
    "tensorboard": EXTRAS_TENSORBOARD,
    "deepspeed": EXTRAS_DEEPSPEED,
    "flash": EXTRAS_FLASH,
    "vllm": EXTRAS_VLLM,
    "all": EXTRAS_DEEPSPEED + EXTRAS_FLASH + EXTRAS_VLLM + EXTRAS_TENSORBOARD,
}

CONFIG_PACKAGE = "implicit_reasoning.configs"  # = the repository's configs/ (data only)

CONSOLE_SCRIPTS = [
    "implicit-reasoning-train = implicit_reasoning.cli:train",
    "implicit-reasoning-eval = implicit_reasoning.cli:evaluate",
    "implicit-reasoning-fragility = implicit_reasoning.cli:fragility",
    "implicit-reasoning-plot = implicit_reasoning.cli:plot",
    "implicit-reasoning-benchmark = implicit_reasoning.cli:benchmark",
    "implicit-reasoning-compare = implicit_reasoning.cli:compare",
]

setup(
    name="implicit-reasoning",
    version=read_version(),
    description=(
        "Hugging Face Trainer subclasses that train a causal LM to reason before it answers "
        "(LaTRO, Markovian, STaR, PPO with curriculum)."
    ),
    long_description=read_long_description(),
    long_description_content_type="text/markdown",
    packages=[*find_packages(include=["implicit_reasoning", "implicit_reasoning.*"]), CONFIG_PACKAGE],
    package_dir={CONFIG_PACKAGE: "configs"},
    package_data={CONFIG_PACKAGE: ["*.yaml", "*.json"]},
    entry_points={"console_scripts": CONSOLE_SCRIPTS},
    python_requires=">=3.10",
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS_REQUIRE,
    classifiers=[
        "Programming Language :: Python :: 3",
        "Programming Language :: Python :: 3 :: Only",
        "Intended Audience :: Science/Research",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
