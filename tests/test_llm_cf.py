"""LLM-as-RS collaborative-filtering injection: the injection is exactly additive (a zero projection changes
nothing), the projection trains beside LoRA while the CF table stays frozen, config errors, and a run that trains
SASRec and then an LLM reading SASRec's best item embeddings."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from _multidevice_worker import tiny_split
from flax import nnx

from jaxrec.models import llm_rs, registry
from jaxrec.nn.layers import Constant
from jaxrec.nn.lora import LoRAParam
from jaxrec.text.prompts import build_prompts

PROMPT = {"max_prompt_tokens": 64, "max_title_tokens": 16}
SHAPE = dict(tokenizer_vocab_size=400, hidden_size=32, intermediate_size=64, num_layers=1, num_heads=4,
             num_kv_heads=2, head_dim=8, max_history=5, beam_width=8, prompt=PROMPT)
NUM_ITEMS, CF_DIM = 12, 6


@pytest.fixture(scope="module")
def split():
    return tiny_split(num_users=120, num_items=NUM_ITEMS)


@pytest.fixture(scope="module")
def table_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("cf") / "items.npy"
    np.save(path, np.random.default_rng(0).normal(size=(NUM_ITEMS + 1, CF_DIM)).astype(np.float32))
    return str(path)


def parts_of(split, table_file, workdir, **fields) -> llm_rs.LLMRSFamily:
    config = llm_rs.LLMRSConfig(**SHAPE, cf_embeddings=table_file, **fields)
    return llm_rs.LLMRSFamily(config, split.dataset.catalog, workdir, llm_rs.cf_table(config, NUM_ITEMS, {}))


def test_injection_is_exactly_additive(split, table_file, tmp_path):
    parts = parts_of(split, table_file, tmp_path)
    model = parts.create(nnx.Rngs(0))
    histories, targets, _ = split.training_examples(5)
    rows = parts.prompts.training_rows(histories[:6], targets[:6])
    batch = {name: jnp.asarray(value) for name, value in rows.items()}
    assert (rows["items"] > 0).sum(axis=1).min() >= 1  # every row has a CF slot
    plain = model.hidden_states(batch["tokens"], batch["mask"])
    injected = parts.cf_inputs(model, batch["items"])
    assert injected.shape == (*rows["tokens"].shape, 32)
    # The projection starts at zero: the CF model is the plain model on the same (slot-extended) prompt, exactly.
    np.testing.assert_array_equal(model.hidden_states(batch["tokens"], batch["mask"], input_embeddings=injected),
                                  plain)
    # Decoding too: the prefill with the injection gives the first step's log-probabilities without it.
    ids, mask, items = build_prompts(parts.prompts.tables(), jnp.asarray(split.histories("test", 5)[:4]))
    start = jnp.full((4, 1), parts.prompts.start_token)
    step, state = model.beam_decoder(ids, mask, 4, input_embeddings=parts.cf_inputs(model, items))
    plain_step, plain_state = model.beam_decoder(ids, mask, 4)
    beams = lambda state: jax.tree.map(lambda x: x[:, None], state)  # noqa: E731  (one beam per row, as step 0)
    np.testing.assert_array_equal(step(beams(state), start, 0)[0], plain_step(beams(plain_state), start, 0)[0])

    model.cf_projection.kernel.set_value(jax.random.normal(jax.random.key(1), (CF_DIM, 32)))
    injected = parts.cf_inputs(model, batch["items"])
    assert not np.asarray(injected)[rows["items"] == 0].any()  # only the slots move
    hidden = np.asarray(model.hidden_states(batch["tokens"], batch["mask"], input_embeddings=injected))
    first_slot, start = int(np.argmax(rows["items"][0] > 0)), int(np.argmax(rows["mask"][0] > 0))
    np.testing.assert_array_equal(hidden[0, start:first_slot], np.asarray(plain)[0, start:first_slot])  # the header
    assert not np.allclose(hidden[0, first_slot:], np.asarray(plain)[0, first_slot:])
    loss, _ = parts.loss(model, batch, jax.random.key(0))
    assert np.isfinite(float(loss))


def test_lora_trains_the_adapters_and_the_projection_only(split, table_file, tmp_path):
    parts = parts_of(split, table_file, tmp_path, mode="lora")
    family = parts.model_family()
    assert "items" in family.padded_columns
    _, params, frozen = nnx.split(parts.create(nnx.Rngs(0)), family.trainable, ...)
    trainable = {".".join(map(str, path)): v for path, v in nnx.to_flat_state(params)}
    fixed = {".".join(map(str, path)): v for path, v in nnx.to_flat_state(frozen)}
    assert "cf_projection.kernel" in trainable and isinstance(trainable["cf_projection.kernel"], llm_rs.CFParam)
    assert all(isinstance(v, LoRAParam) for name, v in trainable.items() if name != "cf_projection.kernel")
    assert isinstance(fixed["tables.cf"], Constant)
    np.testing.assert_array_equal(fixed["tables.cf"].get_value(), np.load(table_file))
    assert not any(isinstance(v, LoRAParam | llm_rs.CFParam) for v in fixed.values())
    counts = registry.parameter_counts("llm", ml_collections.ConfigDict({"model": {"mode": "lora"}}), params, frozen)
    components = counts["components"]
    assert components["cf_projection"] == CF_DIM * 32
    assert components["lora"] + components["cf_projection"] == counts["trainable"]
    # Scratch: every parameter trains, the projection among them; the table is still frozen.
    scratch = parts_of(split, table_file, tmp_path)
    _, params, frozen = nnx.split(scratch.create(nnx.Rngs(0)), scratch.model_family().trainable, ...)
    assert "cf_projection" in params and "cf" in frozen["tables"] and "cf" not in params.get("tables", {})


def test_config_errors(split, table_file, tmp_path):
    with pytest.raises(ValueError, match="at most one of `cf_source`"):
        llm_rs.LLMRSConfig(cf_source="sasrec", cf_embeddings=table_file)
    config = llm_rs.LLMRSConfig(**SHAPE, cf_source="sasrek")
    with pytest.raises(ValueError, match="cf_source 'sasrek'.*sasrec"):
        llm_rs.family(config, split, tmp_path, {"sasrec": np.zeros((NUM_ITEMS + 1, 4))})
    with pytest.raises(ValueError, match="cf_source"):
        llm_rs.family(config, split, tmp_path)
    # A run places a model after its CF source (config order is by name) and names a missing source up front.
    from jaxrec.pipeline import model_order

    models = {"llm": {"family": "llm", "model": {"cf_source": "sasrec"}}, "pop": {"family": "popularity"},
              "sasrec": {"family": "sasrec", "model": {}}}
    assert model_order(ml_collections.ConfigDict(models)) == ["sasrec", "llm", "pop"]
    models["llm"]["model"]["cf_source"] = "sasrek"
    with pytest.raises(ValueError, match="models.llm.model.cf_source: 'sasrek' is not a model"):
        model_order(ml_collections.ConfigDict(models))
    models["llm"]["model"]["cf_source"] = "llm"
    with pytest.raises(ValueError, match="cycle"):
        model_order(ml_collections.ConfigDict(models))
    short = tmp_path / "short.npy"
    np.save(short, np.zeros((NUM_ITEMS, 4), np.float32))
    with pytest.raises(ValueError, match=r"cf_embeddings: item embeddings of shape \(12, 4\)"):
        llm_rs.family(llm_rs.LLMRSConfig(**SHAPE, cf_embeddings=str(short)), split, tmp_path)


def test_run_trains_sasrec_then_the_llm_on_its_item_embeddings(tmp_path, monkeypatch):
    """configs/llm_cf_synthetic.py, shrunk: the LLM's frozen CF table is SASRec's best-checkpoint item table."""
    import importlib.util
    from pathlib import Path

    from jaxrec import pipeline

    spec = importlib.util.spec_from_file_location(
        "llm_cf_synthetic", Path(__file__).resolve().parents[1] / "configs" / "llm_cf_synthetic.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config()
    config.data.options = {"num_users": 120, "num_items": NUM_ITEMS, "seed": 0, "num_clusters": 4}
    config.eval.update(ks=(1, 10), max_history=5, stages=("test",), cold_start=False)
    quick = dict(num_steps=6, eval_every_steps=6, batch_size=32, eval_batch_size=64, eval_ks=(10,), progress=False,
                 tensorboard=False, async_checkpointing=False)
    config.models.sasrec.model.update(hidden=8, ffn_hidden=8, num_heads=1, num_layers=1, max_length=10)
    config.models.sasrec.train.update(bucket_lengths=(11,), **quick)
    config.models.llm.model.update(**{k: v for k, v in SHAPE.items() if k != "prompt"})
    config.models.llm.model.prompt.update(PROMPT)
    config.models.llm.train.update(bucket_lengths=(48, 81), **quick)
    built = {}

    def recording_build(family, model_config, split, workdir, artifacts):
        recommender, parameters = registry.build(family, model_config, split, workdir, artifacts)
        built[family] = recommender
        return recommender, parameters

    monkeypatch.setattr(pipeline, "build", recording_build)
    metrics = pipeline.run(config, tmp_path)
    assert metrics["llm"]["test"]["invalid_rate@10"] == 0.0
    assert metrics["llm"]["parameters"]["components"]["cf_projection"] == 8 * 32
    sasrec = built["sasrec"]
    best = sasrec.params["items"]["embedding"].get_value()
    np.testing.assert_array_equal(sasrec.item_embeddings(), best)
    cf = [v.get_value() for path, v in nnx.to_flat_state(built["llm"].trainer.frozen) if path == ("tables", "cf")]
    assert len(cf) == 1
    np.testing.assert_array_equal(cf[0], best)
    assert built["llm"].item_embeddings() is None  # LLM-as-RS provides no item table of its own
    # `jaxrec predict` restores the LLM with SASRec's table read from SASRec's own best checkpoint.
    from jaxrec.predict import predict

    history = [1, 2, 3]
    answer = predict(tmp_path, [" ".join(map(str, history))], model="llm", k=5)
    expected = built["llm"].recommend(np.asarray([[0, 0, *history]], np.int32), 5)[0]
    assert answer[0]["items"] == [int(i) for i in expected if i > 0]
