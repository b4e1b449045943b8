"""Values are checked when a config is built, whatever the source (Python, YAML, flags), and the error names the
field: a wrong type (a YAML list where a number belongs, 4.5 for an integer) or a value out of range."""

import pytest

from implicit_reasoning.pipeline import parse_training_args
from implicit_reasoning.trainer import LatroConfig, MarkovianConfig, PPOCurriculumConfig, SFTBaselineConfig, STaRConfig

BAD = [  # (config class, field, value, what the error says)
    (LatroConfig, "learning_rate", -0.001, "learning_rate=-0.001: must be >= 0"),
    (LatroConfig, "learning_rate", [0.1, 0.2], r"learning_rate=\[0.1, 0.2\]: must be a number"),
    (STaRConfig, "per_device_train_batch_size", 0, "per_device_train_batch_size=0: must be >= 1"),
    (LatroConfig, "rloo_k", 4.5, "rloo_k=4.5: must be an integer"),
    (MarkovianConfig, "cot_length", "twelve", "cot_length='twelve': must be an integer"),
    (SFTBaselineConfig, "gradient_accumulation_steps", 0, "gradient_accumulation_steps=0: must be >= 1"),
    (PPOCurriculumConfig, "use_lora", "maybe", "use_lora='maybe': must be true or false"),
    (LatroConfig, "stop_seqs", {"a": 1}, r"stop_seqs=\{'a': 1\}: must be a list of a string"),
    (LatroConfig, "dataset_name", ["gsm8k"], r"dataset_name=\['gsm8k'\]: must be a string"),
    (STaRConfig, "adam_beta2", 1.0, "adam_beta2=1.0: must be >= 0 and < 1"),
]


@pytest.mark.parametrize("cls, name, value, message", BAD, ids=[f"{c.__name__}.{n}" for c, n, _, _ in BAD])
def test_a_bad_value_is_an_error_naming_the_field_when_the_config_is_built(tmp_path, cls, name, value, message):
    with pytest.raises(ValueError, match=message):
        cls(output_dir=str(tmp_path), **{name: value})


@pytest.mark.parametrize("line, message", [
    ("learning_rate: [0.1, 0.2]", "learning_rate=.*must be a number"),
    ("rloo_k: 4.5", "rloo_k=4.5: must be an integer"),
    ("learning_rate: -1.0e-3", "learning_rate=-0.001: must be >= 0"),
    ("per_device_train_batch_size: 0", "per_device_train_batch_size=0: must be >= 1"),
])
def test_a_bad_yaml_value_is_named(tmp_path, line, message):
    path = tmp_path / "run.yaml"
    path.write_text(f"trainer: latro\noutput_dir: {tmp_path}\n{line}\n")
    with pytest.raises(ValueError, match=message):
        parse_training_args([str(path)])


def test_values_in_the_forms_yaml_and_python_give_are_converted(tmp_path):
    path = tmp_path / "run.yaml"
    # YAML 1.1 reads 5e-7 (no dot) as a string; 8.0 is an integer written as a float
    path.write_text(f"trainer: latro\noutput_dir: {tmp_path}\nlearning_rate: 5e-7\nrloo_k: 8.0\nstop_seqs: 'Answer:'\n")
    _, config = parse_training_args([str(path)])
    assert config.learning_rate == 5e-7 and isinstance(config.learning_rate, float)
    assert config.rloo_k == 8 and isinstance(config.rloo_k, int)
    assert config.stop_seqs == ["Answer:"]
    config = STaRConfig(output_dir=str(tmp_path), learning_rate=1, num_iterations="2", use_lora="false")
    assert (config.learning_rate, config.num_iterations, config.use_lora) == (1.0, 2, False)
    assert isinstance(config.learning_rate, float)
