"""Parity of the NNX BERT and T5 models with Hugging Face PyTorch, fp32, <= 1e-5.

Tiny random checkpoints are written by the tests (every weight perturbed, so a misplaced parameter shows); batches
are right-padded. Hidden states are compared over real tokens: padded positions are read by nothing (pooling masks
them), and there even HF's own eager and SDPA attention disagree by ~4e-5 on all-MiniLM-L6-v2.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers
from _hf_fixtures import (
    batch,
    bert_model,
    exact_matmuls,  # noqa: F401 (autouse fixture)
    max_diff,
    mean_pool,
    perturb,
    save,
    t5_config,
    t5_encoder,
)
from flax import nnx

from jaxrec.models import bert, hf_loading, t5
from jaxrec.nn.attention import relative_position_bucket
from jaxrec.nn.layers import Embed

TOL = 1e-5


def test_bert_matches_transformers(tmp_path):
    reference = bert_model()
    model = bert.load(save(reference, tmp_path))
    ids, mask = batch([17, 9, 1])
    token_types = (np.arange(ids.shape[1])[None] >= 5).astype(np.int64) * mask
    with torch.no_grad():
        expected = reference(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask),
                             token_type_ids=torch.tensor(token_types)).last_hidden_state
        plain = reference(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask)).last_hidden_state
    hidden = model(jnp.asarray(ids), jnp.asarray(mask), jnp.asarray(token_types))
    assert max_diff(hidden, expected, mask) <= TOL
    assert max_diff(model.embed(jnp.asarray(ids), jnp.asarray(mask)), mean_pool(plain, mask, True)) <= TOL
    unnormalised = model.embed(jnp.asarray(ids), jnp.asarray(mask), normalize=False)
    assert max_diff(unnormalised, mean_pool(plain, mask, False)) <= TOL


@pytest.mark.parametrize("bidirectional", [True, False])
@pytest.mark.parametrize("buckets, distance", [(32, 128), (8, 20)])
def test_relative_position_buckets_match_transformers(bidirectional, buckets, distance):
    relative = np.arange(-300, 301)[None, :]
    expected = transformers.models.t5.modeling_t5.T5Attention._relative_position_bucket(
        torch.tensor(relative), bidirectional=bidirectional, num_buckets=buckets, max_distance=distance)
    ours = relative_position_bucket(jnp.asarray(relative), bidirectional=bidirectional, num_buckets=buckets,
                                    max_distance=distance)
    np.testing.assert_array_equal(np.asarray(ours), expected.numpy())


@pytest.mark.parametrize("feed_forward_proj", ["relu", "gated-gelu"])
def test_t5_encoder_matches_transformers(tmp_path, feed_forward_proj):
    reference = t5_encoder(feed_forward_proj)
    model = t5.load(save(reference, tmp_path))
    assert model.config.gated == (feed_forward_proj == "gated-gelu")
    ids, mask = batch([40, 23, 4])  # beyond max_distance 20: every bucket kind is used
    with torch.no_grad():
        expected = reference(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask)).last_hidden_state
    assert max_diff(model(jnp.asarray(ids), jnp.asarray(mask)), expected, mask) <= TOL
    assert max_diff(model.embed(jnp.asarray(ids), jnp.asarray(mask)), mean_pool(expected, mask, True)) <= TOL


class _EncoderDecoder(nnx.Module):
    """Shared embedding + encoder and decoder stacks, as the TIGER model composes them."""

    def __init__(self, config: t5.T5Config, *, rngs: nnx.Rngs):
        self.shared = Embed(config.vocab_size, config.d_model, rngs=rngs)
        self.encoder = t5.T5Stack(config, rngs=rngs)
        self.decoder = t5.T5Stack(config, decoder=True, rngs=rngs)

    def __call__(self, ids, mask, decoder_ids, decoder_mask):
        encoded = self.encoder(self.shared(ids), mask)
        return self.decoder(self.shared(decoder_ids), decoder_mask, encoded=encoded, encoded_mask=mask)


def test_t5_decoder_stack_matches_transformers(tmp_path):
    """Causal self-attention with unidirectional buckets and cross-attention, against HF `T5Model`'s decoder; the
    full checkpoint loads through the same key map with both stacks."""
    torch.manual_seed(0)
    reference = perturb(transformers.T5Model(t5_config("gated-gelu")))
    folder = save(reference, tmp_path)
    config = t5.T5Config.from_hf(reference.config.to_dict())
    model = hf_loading.load_pretrained(lambda: _EncoderDecoder(config, rngs=nnx.Rngs(0)), folder,
                                       t5.key_map(config, stacks=("encoder", "decoder")))
    ids, mask = batch([30, 12])
    decoder_ids, decoder_mask = batch([25, 7], seed=1)
    with torch.no_grad():
        expected = reference(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask),
                             decoder_input_ids=torch.tensor(decoder_ids),
                             decoder_attention_mask=torch.tensor(decoder_mask)).last_hidden_state
    ours = model(*(jnp.asarray(x) for x in (ids, mask, decoder_ids, decoder_mask)))
    assert max_diff(ours, expected, decoder_mask) <= TOL
    # The encoder-only model ignores the decoder of the same full checkpoint.
    encoder = t5.load(folder)
    with torch.no_grad():
        encoded = reference.encoder(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask)).last_hidden_state
    assert max_diff(encoder(jnp.asarray(ids), jnp.asarray(mask)), encoded, mask) <= TOL
