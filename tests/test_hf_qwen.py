"""Parity of the NNX Qwen3 model (and Qwen2/Llama through the same code) with Hugging Face PyTorch, fp32, <= 1e-5.

Tiny random checkpoints written by the tests (every weight perturbed, GQA with 2 key/value heads for 4 query heads,
head_dim from the config, a non-default RoPE theta); right-padded batches; states and logits compared over real
tokens (padded positions are read by nothing).
"""

from __future__ import annotations

import jax.numpy as jnp
import pytest
import torch
import transformers
from _hf_fixtures import (
    batch,
    exact_matmuls,  # noqa: F401 (autouse fixture)
    max_diff,
    mean_pool,
    perturb,
    qwen3_causal_lm,
    qwen3_config,
    save,
)

from jaxrec.models import qwen

TOL = 1e-5


def _check_causal_lm(reference, model, lengths):
    ids, mask = batch(lengths)
    with torch.no_grad():
        logits = reference(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask)).logits
        hidden = reference.model(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask)).last_hidden_state
    our_hidden, our_logits = model(jnp.asarray(ids), jnp.asarray(mask))
    assert max_diff(our_hidden, hidden, mask) <= TOL
    assert max_diff(our_logits, logits, mask) <= TOL
    assert max_diff(model.embed(jnp.asarray(ids), jnp.asarray(mask), normalize=False),
                    mean_pool(hidden, mask, False)) <= TOL
    assert max_diff(model.embed(jnp.asarray(ids), jnp.asarray(mask)), mean_pool(hidden, mask, True)) <= TOL


@pytest.mark.parametrize("tied", [True, False])
def test_qwen3_matches_transformers(tmp_path, tied):
    reference = qwen3_causal_lm(tie_word_embeddings=tied)
    model = qwen.load(save(reference, tmp_path))
    config = model.config
    assert (config.num_heads, config.num_kv_heads, config.head_dim, config.rope_theta) == (4, 2, 16, 5000.0)
    assert config.qk_norm and (model.lm_head is None) == tied
    _check_causal_lm(reference, model, [21, 13, 2])


def test_qwen3_base_model_without_lm_head(tmp_path):
    """A `Qwen3Model` checkpoint (no `model.` prefix) with untied embeddings: states, but no logits."""
    torch.manual_seed(0)
    reference = perturb(transformers.Qwen3Model(qwen3_config(tie_word_embeddings=False)))
    model = qwen.load(save(reference, tmp_path))
    ids, mask = batch([11, 6])
    with torch.no_grad():
        expected = reference(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask)).last_hidden_state
    assert max_diff(model.hidden_states(jnp.asarray(ids), jnp.asarray(mask)), expected, mask) <= TOL
    with pytest.raises(ValueError, match="no LM head"):
        model.logits(jnp.zeros((1, 32)))


def test_qwen2_and_llama_load_through_the_same_code(tmp_path):
    """Qwen2 (q/k/v biases, no qk-norm) and Llama (attention_bias: q/k/v/o biases), tiny and untied."""
    common = dict(vocab_size=96, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, max_position_embeddings=64, tie_word_embeddings=False,
                  attn_implementation="eager")
    torch.manual_seed(0)
    qwen2 = perturb(transformers.Qwen2ForCausalLM(transformers.Qwen2Config(**common)))
    llama = perturb(transformers.LlamaForCausalLM(transformers.LlamaConfig(attention_bias=True, **common)))
    for name, reference in (("qwen2", qwen2), ("llama", llama)):
        model = qwen.load(save(reference, tmp_path / name))
        assert not model.config.qk_norm and model.config.qkv_bias
        assert model.config.out_bias == (name == "llama")
        _check_causal_lm(reference, model, [15, 4])


def test_qwen_rejects_what_it_does_not_implement():
    base = qwen3_config().to_dict()
    with pytest.raises(ValueError, match="RoPE type 'yarn'"):
        qwen.QwenConfig.from_hf({**base, "rope_parameters": {"rope_type": "yarn", "rope_theta": 1e6, "factor": 4.0}})
    with pytest.raises(ValueError, match="sliding-window"):
        qwen.QwenConfig.from_hf({**base, "use_sliding_window": True})
    with pytest.raises(ValueError, match="not a Qwen3-style decoder"):
        qwen.QwenConfig.from_hf({**base, "model_type": "gpt2"})
