"""A user's own data file: prompts are built from its `question` column when it has one (cot_trigger, chat
template, Markovian's instruction), and a file with only finished `queries` says plainly that they are used as
they are (issue 20, defects 1 and 5). The warnings come once per file and process: every test writes its own file."""

import json
import warnings

import pytest
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from implicit_reasoning.data import registry as du
from implicit_reasoning.objectives.markovian import MarkovianPrompts

CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}<|end|>{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


def _tokenizer(chat_template=CHAT_TEMPLATE):
    backend = Tokenizer(models.WordLevel(vocab={"[UNK]": 0, "[PAD]": 1}, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tok = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]", pad_token="[PAD]")
    tok.chat_template = chat_template
    return tok


def _write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


FINISHED = "<|user|>Question: 2 + 3\nLet's think step by step.<|end|><|assistant|>"
ROWS = [{"queries": FINISHED, "question": "2 + 3", "responses": " The answer is 5.", "groundtruth": "5",
         "rationale": "2 + 3 = 5."},
        {"queries": FINISHED.replace("2 + 3", "4 + 4"), "question": "4 + 4", "responses": " The answer is 8.",
         "groundtruth": 8, "rationale": "4 + 4 = 8."}]


def test_markovian_reads_the_files_question_column_and_wraps_it_once(tmp_path):
    path = _write(tmp_path / "data.jsonl", ROWS)
    examples = du.load_markovian_examples(path, "train", _tokenizer())
    assert list(examples["question"]) == ["2 + 3", "4 + 4"] and list(examples["answer"]) == ["5", "8"]
    assert list(examples["rationale"]) == ["2 + 3 = 5.", "4 + 4 = 8."]
    prompt = MarkovianPrompts(_tokenizer(), "Solve.").text(examples["question"][0])
    assert prompt == "<|user|>Solve. 2 + 3<|end|><|assistant|>Reasoning:"  # one user turn, the question once


def test_markovian_on_a_file_with_only_finished_prompts_is_an_error_naming_the_column(tmp_path):
    path = _write(tmp_path / "data.jsonl", [{k: r[k] for k in ("queries", "responses", "groundtruth")} for r in ROWS])
    with pytest.raises(ValueError, match=r"no 'question' column.*queries.*finished prompts"):
        du.load_markovian_examples(path, "train", _tokenizer())


def test_a_question_column_gets_the_cot_trigger_and_the_chat_template(tmp_path):
    path = _write(tmp_path / "data.jsonl", [{k: v for k, v in r.items() if k != "queries"} for r in ROWS])
    chat = du.load_task_dataset(path, "train", _tokenizer(), cot_trigger="Add them.")
    assert chat[0]["queries"] == "<|user|>Question: 2 + 3\nAdd them.<|end|><|assistant|>"
    assert list(chat["groundtruth"]) == ["5", "8"] and list(chat["responses"]) == [" The answer is 5.", " The answer is 8."]
    plain = du.load_task_dataset(path, "train", _tokenizer(), cot_trigger="Add them.", use_chat_template=False)
    assert plain[1]["queries"] == "Question: 4 + 4\nAdd them.\n"
    # without a responses column the gold response is built as for registry sets
    bare = _write(tmp_path / "bare.jsonl", [{"question": "1 + 1", "groundtruth": "2"}])
    assert du.load_task_dataset(bare, "train", _tokenizer())["responses"][0] == " The answer is 2."


def test_a_files_own_queries_beside_a_question_column_are_replaced_with_one_warning(tmp_path):
    path = _write(tmp_path / "data.jsonl", ROWS)
    with pytest.warns(UserWarning, match=r"built from its 'question' column.*'queries' column is not used"):
        ds = du.load_task_dataset(path, "train", _tokenizer(), cot_trigger="Add them.")
    assert ds[0]["queries"].endswith("Add them.<|end|><|assistant|>")
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*'queries'")  # (the single-file-serves-every-split notice may come)
        du.load_task_dataset(path, "eval", _tokenizer(), cot_trigger="Add them.")  # once per file


def test_finished_queries_are_used_as_they_are_and_say_so_once(tmp_path):
    rows = [{k: r[k] for k in ("queries", "responses", "groundtruth")} for r in ROWS]
    path = _write(tmp_path / "data.jsonl", rows)
    with pytest.warns(UserWarning, match=r"used as they are.*cot_trigger and use_chat_template do not apply"):
        ds = du.load_task_dataset(path, "train", _tokenizer(), cot_trigger="Add them.")
    assert list(ds["queries"]) == [r["queries"] for r in rows]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        du.load_task_dataset(path, "train", _tokenizer(), cot_trigger="Add them.")


def test_star_rationalizes_a_custom_file_with_its_own_cot_trigger(tmp_path, demo_tokenizer, tiny_llama):
    from implicit_reasoning.trainer import STaRConfig, STaRTrainer

    path = _write(tmp_path / "data.jsonl", ROWS)
    config = STaRConfig(output_dir=str(tmp_path / "run"), report_to=[], use_cpu=True, dataset_name=path,
                        num_iterations=1, start_steps=1, response_length=4)
    with pytest.warns(UserWarning, match="'queries' column is not used"):
        data = STaRTrainer.load_split(config, "train", demo_tokenizer)
    # the hint prompts are rebuilt from `question` with STaR's cot_trigger: the dataset's queries match them
    STaRTrainer(tiny_llama, config, train_dataset=data, processing_class=demo_tokenizer)
