"""Every public trainer and config class documents its arguments and carries a runnable example, and the example
runs.

The examples are the code `help(cls)` shows (`trainer/core/docstrings.py` appends them to the class docstrings),
run here as they are: offline, on the package's tiny demo model and generated arithmetic, a couple of updates
each, all in one process (the imports are paid once). No tiny model is substituted: a user can paste any of them.
"""

import inspect
import os
import re
from dataclasses import fields

import pytest
from transformers import TrainingArguments

import implicit_reasoning.trainer as trainer_package
from implicit_reasoning.trainer import TRAINERS, config_class
from implicit_reasoning.trainer.core.base_config import SamplingFields
from implicit_reasoning.trainer.core.config_sections import config_sections
from implicit_reasoning.trainer.core.docstrings import EXAMPLES
from implicit_reasoning.trainer.core.rollout_config import GroupRolloutConfig

PUBLIC = sorted({getattr(trainer_package, name) for name in trainer_package.__all__
                 if inspect.isclass(getattr(trainer_package, name, None))} | {SamplingFields, GroupRolloutConfig},
                key=lambda cls: cls.__name__)
HF_FIELDS = {f.name for f in fields(TrainingArguments)}


def example_of(cls) -> str:
    """The code block after "Example" in the class's docstring, dedented."""
    doc = inspect.getdoc(cls)
    block = doc.split("Example (runs offline, in seconds)::\n\n", 1)[1]
    return inspect.cleandoc("\n".join(line for line in block.splitlines()))


@pytest.mark.parametrize("cls", PUBLIC, ids=lambda cls: cls.__name__)
def test_every_public_class_documents_its_arguments_and_an_example(cls):
    doc = inspect.getdoc(cls)
    assert example_of(cls) == EXAMPLES[cls.__name__].strip()
    if hasattr(cls, "compute_objective"):  # a trainer: every constructor argument
        for argument in inspect.signature(trainer_package.BaseTrainer.__init__).parameters:
            assert argument == "self" or f"    {argument} (" in doc, (cls.__name__, argument)
    else:  # a config: every field it declares, with its help text
        for name in cls.__dict__.get("__annotations__", {}):
            assert re.search(rf"^    {name} \(`", doc, re.M), (cls.__name__, name)


@pytest.mark.parametrize("name", sorted(TRAINERS))
def test_every_field_of_a_trainers_config_is_in_a_docstring_section(name):
    """`--help --trainer NAME` groups the fields by these sections: none is left in "Other fields"."""
    cls = config_class(name)
    listed = {field for _, names in config_sections(cls) for field in names}
    own = {f.name for f in fields(cls) if f.init and f.name not in HF_FIELDS}
    assert own <= listed, sorted(own - listed)


def test_every_example_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # the examples' output_dir land here
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for cls in PUBLIC:
        code = example_of(cls)
        exec(compile(code, f"<example of {cls.__name__}>", "exec"), {"__name__": f"example_{cls.__name__}"})
    printed = capsys.readouterr().out
    assert "'eval_accuracy'" in printed and "[40, 48, 57] 145" in printed  # LaTRO's evaluate(), STaRConfig's schedule
    assert {"latro_example", "star_example", "ppo_example", "nll_example", "reinforce_example"} <= set(os.listdir())
