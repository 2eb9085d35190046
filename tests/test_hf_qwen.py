"""Parity of the NNX Qwen3 model (and Qwen2/Llama through the same code) with Hugging Face PyTorch, fp32, <= 1e-5.

Tiny random checkpoints written by the tests (every weight perturbed, GQA with 2 key/value heads for 4 query heads,
head_dim from the config, a non-default RoPE theta); right-padded batches; states and logits compared over real
tokens (padded positions are read by nothing).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
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

from jaxrec.decoding.beam_search import beam_search
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


# ------------------------------------------------------------------------------------------------ cached decoding
START = 7  # the fixed last prompt token (a template's answer opener), fed as the beam search's start token


def _left_padded_prompts(lengths: list[int], seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Left-padded random prompts [B, P] ending in START, and their mask."""
    ids, mask = batch(lengths, seed=seed)
    ids[np.arange(len(lengths)), np.asarray(lengths) - 1] = START
    shifts = ids.shape[1] - np.asarray(lengths)
    return (np.stack([np.roll(row, s) for row, s in zip(ids, shifts)]),
            np.stack([np.roll(row, s) for row, s in zip(mask, shifts)]))


def test_cached_beam_steps_equal_the_full_forward(tmp_path):
    """Two beams per row continue a left-padded prompt with different tokens: every cached step's log-probs equal
    the full forward's over prompt + continuation (GQA over the shared prompt keys and each beam's cache)."""
    model = qwen.load(save(qwen3_causal_lm(), tmp_path))
    prompts, mask = _left_padded_prompts([9, 5, 12])
    steps, beams = 4, 2
    continuation = np.random.default_rng(2).integers(1, 90, (len(prompts), beams, steps))
    step_fn, state = model.beam_decoder(jnp.asarray(prompts[:, :-1]), jnp.asarray(mask[:, :-1]), steps)
    state = jax.tree.map(lambda x: jnp.repeat(x[:, None], beams, axis=1), state)
    tokens = jnp.full((len(prompts), beams), START)
    cached = []
    for step in range(steps):
        log_probs, state = step_fn(state, tokens, jnp.asarray(step))
        cached.append(np.asarray(log_probs))
        tokens = jnp.asarray(continuation[:, :, step])
    for beam in range(beams):
        ids = np.concatenate([prompts, continuation[:, beam, :-1]], axis=1)
        full_mask = np.concatenate([mask, np.ones((len(prompts), steps - 1), mask.dtype)], axis=1)
        _, logits = model(jnp.asarray(ids), jnp.asarray(full_mask))
        expected = np.asarray(jax.nn.log_softmax(logits, axis=-1))[:, prompts.shape[1] - 1:]
        got = np.stack([step_log_probs[:, beam] for step_log_probs in cached], axis=1)
        np.testing.assert_allclose(got, expected, atol=TOL, rtol=0)


@pytest.mark.parametrize("family", ["qwen3", "qwen2", "llama"])
def test_greedy_generation_matches_transformers(tmp_path, family):
    """Beam search with one beam (greedy) over the cached decoder = transformers' `generate(do_sample=False)`, on
    left-padded prompts of different lengths."""
    common = dict(vocab_size=96, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, max_position_embeddings=64, tie_word_embeddings=False,
                  attn_implementation="eager")
    if family == "qwen3":
        reference = qwen3_causal_lm()
    else:
        torch.manual_seed(0)
        config = (transformers.Qwen2Config(**common) if family == "qwen2"
                  else transformers.LlamaConfig(attention_bias=True, **common))
        module = transformers.Qwen2ForCausalLM if family == "qwen2" else transformers.LlamaForCausalLM
        reference = perturb(module(config))
    model = qwen.load(save(reference, tmp_path))
    prompts, mask = _left_padded_prompts([10, 4, 7], seed=3)
    new_tokens = 20  # beyond the first cache phase (8): the KV cache grows 8 -> 16 -> 20 while decoding
    with torch.no_grad():
        generated = reference.generate(input_ids=torch.tensor(prompts), attention_mask=torch.tensor(mask),
                                       max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False,
                                       num_beams=1, pad_token_id=0, eos_token_id=None)
    expected = generated[:, prompts.shape[1]:].numpy()

    @jax.jit
    def greedy(prompt_ids, prompt_mask):
        step_fn, state = model.beam_decoder(prompt_ids, prompt_mask, new_tokens)
        return beam_search(step_fn, state, None, beam_width=1, start_token=START, num_steps=new_tokens,
                           constrained=False, resize_state=qwen.resize_beam_state).sequences[:, 0]

    ours = np.asarray(greedy(jnp.asarray(prompts[:, :-1]), jnp.asarray(mask[:, :-1])))
    np.testing.assert_array_equal(ours, expected)


def test_paper_shapes_count_as_the_model_cards_say():
    """Qwen3 0.6B-14B shapes: totals and non-embedding counts as published; LoRA rank 8 on all seven projections
    of 0.6B trains about 1% (0.85%)."""
    from flax import nnx as _nnx

    from jaxrec.nn.lora import add_lora

    published = {"qwen3-0.6b": (0.6, 0.44), "qwen3-1.7b": (1.7, 1.4), "qwen3-4b": (4.0, 3.6),
                 "qwen3-8b": (8.2, 6.95), "qwen3-14b": (14.8, 13.2)}
    for name, (total, without_embedding) in published.items():
        config = qwen.QwenConfig(vocab_size=qwen.QWEN3_VOCAB, **qwen.QWEN3_SHAPES[name])
        counts = qwen.count_parameters(config)
        assert counts["total"] / 1e9 == pytest.approx(total, abs=0.05), name
        assert counts["without_embedding"] / 1e9 == pytest.approx(without_embedding, rel=0.02), name
    config = qwen.QwenConfig(vocab_size=qwen.QWEN3_VOCAB, **qwen.QWEN3_SHAPES["qwen3-0.6b"])
    lora = qwen.count_parameters(config, lambda m: add_lora(m, rank=8, rngs=_nnx.Rngs(0)))
    # Per layer and rank: q 1024+2048, k 1024+1024, v 1024+1024, o 2048+1024, gate/up/down 1024+3072 each.
    assert lora["trainable"] == 28 * 8 * (3072 + 2048 + 2048 + 3072 + 3 * 4096)
    assert lora["trainable"] / lora["total"] == pytest.approx(0.0085, abs=0.0005)
