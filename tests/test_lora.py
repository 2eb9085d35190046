"""LoRA: adapters leave the function unchanged at creation; the trainer trains and stores only them."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _multidevice_worker import tiny_split, tiny_train_config
from flax import nnx

from jaxrec.models import llm_rs
from jaxrec.models.qwen import Qwen, QwenConfig
from jaxrec.nn.lora import LoRADense, LoRAParam, add_lora, parameter_counts
from jaxrec.train.trainer import Trainer

CONFIG = QwenConfig(vocab_size=100, hidden_size=32, intermediate_size=64, num_layers=2, num_heads=4,
                    num_kv_heads=2, head_dim=8)


def test_adapters_start_as_the_identity_and_count():
    model = Qwen(CONFIG, rngs=nnx.Rngs(0))
    ids, mask = jnp.arange(10).reshape(2, 5) + 1, jnp.ones((2, 5), jnp.int32)
    before = model(ids, mask)[1]
    assert add_lora(model, ["q_proj", "v_proj", "down"], rank=4, alpha=8.0, rngs=nnx.Rngs(1)) == 6  # 3 x 2 layers
    assert isinstance(model.layers[0].attention.query, LoRADense)
    np.testing.assert_array_equal(model(ids, mask)[1], before)  # B = 0
    # q: 32 -> 4 heads x 8 = 32; v: 32 -> 2 x 8 = 16; down: 64 -> 32. Rank 4: (in + out) * 4 each, two layers.
    assert parameter_counts(model)["trainable"] == 2 * 4 * ((32 + 32) + (32 + 16) + (64 + 32))
    with pytest.raises(ValueError, match="unknown LoRA target"):
        add_lora(Qwen(CONFIG, rngs=nnx.Rngs(0)), ["qproj"], rngs=nnx.Rngs(1))


def test_trainer_trains_only_the_adapters(tmp_path):
    split = tiny_split(num_users=120, num_items=12)
    config = llm_rs.LLMRSConfig(mode="lora", tokenizer_vocab_size=300, hidden_size=32, intermediate_size=64,
                                num_layers=1, num_heads=4, num_kv_heads=2, head_dim=8, max_history=5,
                                prompt={"max_prompt_tokens": 64, "max_title_tokens": 16}, lora_rank=4)
    family = llm_rs.family(config, split, tmp_path)
    trainer = Trainer(family, tiny_train_config(batch_size=16, num_steps=6, optimizer={"learning_rate": 1e-2}),
                      tmp_path)
    state = trainer.init_state(6)
    lora_leaves = jax.tree.leaves(state.params)
    names = {str(path[-1]) for path, _ in nnx.to_flat_state(state.params)}
    assert lora_leaves and names == {"lora_a", "lora_b"}  # the adapters' A and B only
    moments = [leaf for leaf in jax.tree.leaves(state.opt_state) if leaf.ndim > 0]
    assert sum(m.size for m in moments) == 2 * sum(p.size for p in lora_leaves)  # Adam's mu and nu, LoRA only
    frozen_before = [np.asarray(x) for x in jax.tree.leaves(trainer.frozen)]
    params_before = [np.asarray(x) for x in jax.tree.leaves(state.params)]
    columns = family.training_columns(split)
    batch = {name: jnp.asarray(value[:16]) for name, value in columns.items()}
    for _ in range(3):
        state, metrics = trainer.train_step(state, batch)
    assert np.isfinite(float(metrics["loss"]))
    assert any(not np.array_equal(a, np.asarray(b)) for a, b in zip(params_before, jax.tree.leaves(state.params)))
    for before, after in zip(frozen_before, jax.tree.leaves(trainer.frozen)):
        np.testing.assert_array_equal(before, np.asarray(after))
    model = nnx.merge(trainer._graphdef, state.params, trainer.frozen)
    assert parameter_counts(model)["trainable"] == sum(p.size for p in lora_leaves)
    assert isinstance(nnx.state(model, LoRAParam), nnx.State)
