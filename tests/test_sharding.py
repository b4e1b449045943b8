"""runtime/sharding.py without DeepSpeed: whole models are deep-copied; what cannot be rebuilt is a clear error.

The ZeRO-3 path itself (rebuilt from the config, weights copied one gathered parameter at a time) runs in
`test_distributed.py`'s launches (reference, critic, value network, `refresh_reference()`, an in-memory model).
"""

import pytest
import torch

from implicit_reasoning.runtime.sharding import clone_model, copy_weights, is_partitioned


def test_a_whole_model_is_deep_copied_with_its_weights(tiny_llama):
    clone = clone_model(tiny_llama)
    assert not is_partitioned(tiny_llama) and clone is not tiny_llama
    for (name, a), (_, b) in zip(tiny_llama.named_parameters(), clone.named_parameters()):
        assert torch.equal(a, b) and a.data_ptr() != b.data_ptr(), name


def test_a_partitioned_model_that_cannot_be_rebuilt_is_an_error_saying_what_to_pass():
    module = torch.nn.Linear(2, 2)
    module.weight.ds_id = 0  # what DeepSpeed ZeRO-3 marks a partitioned parameter with
    assert is_partitioned(module)
    with pytest.raises(ValueError, match=r"pass ref_model.*Linear whose parameters DeepSpeed ZeRO-3 has partitioned.*Pass the copy yourself"):
        clone_model(module, "the reference model (pass ref_model or ref_model_name_or_path)")


def test_copy_weights_copies_everything_and_refuses_a_partial_copy(tiny_llama):
    target = clone_model(tiny_llama)
    with torch.no_grad():
        for param in target.parameters():
            param.zero_()
    copy_weights(tiny_llama, target)
    assert all(torch.equal(a, b) for a, b in zip(tiny_llama.parameters(), target.parameters()))
    with pytest.raises(ValueError, match="no counterpart"):
        copy_weights(torch.nn.Linear(2, 2), tiny_llama)
