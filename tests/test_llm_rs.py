"""LLM-as-RS end to end on a tiny synthetic store: tokenizer trained and reused, the target-only loss, exact title
beam search (with beams >= titles it ranks every title by its sequence log-probability), training through the
shared trainer and restoring the run."""

from __future__ import annotations

import dataclasses
import json
import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from _multidevice_worker import tiny_split
from flax import nnx

from jaxrec.config import ConfigError
from jaxrec.eval.evaluator import evaluate
from jaxrec.models import llm_rs, registry
from jaxrec.text.prompts import build_prompts

PROMPT = {"max_prompt_tokens": 64, "max_title_tokens": 16}
SHAPE = dict(tokenizer_vocab_size=400, hidden_size=32, intermediate_size=64, num_layers=1, num_heads=4,
             num_kv_heads=2, head_dim=8, max_history=5, beam_width=8, prompt=PROMPT)


@pytest.fixture(scope="module")
def split():
    return tiny_split(num_users=120, num_items=12)


@pytest.fixture(scope="module")
def parts(split, tmp_path_factory):
    return llm_rs.LLMRSFamily(llm_rs.LLMRSConfig(**SHAPE), split.dataset.catalog, tmp_path_factory.mktemp("llm"))


def test_loss_is_the_target_tokens_cross_entropy(parts, split):
    model = parts.create(nnx.Rngs(0))
    histories, targets, _ = split.training_examples(5)
    rows = parts.prompts.training_rows(histories[:6], targets[:6])
    batch = {name: jnp.asarray(value) for name, value in rows.items()}
    loss, aux = parts.loss(model, batch, jax.random.key(0))
    _, logits = model(batch["tokens"], batch["mask"])
    log_probs = np.asarray(jax.nn.log_softmax(logits, axis=-1))
    expected, count = 0.0, 0
    for row in range(6):
        for position in np.flatnonzero(rows["target_mask"][row]):
            expected -= log_probs[row, position - 1, rows["tokens"][row, position]]
            count += 1
    assert float(aux["weight"]) == count
    assert float(loss) == pytest.approx(expected / count, rel=1e-5)


def test_loss_of_rows_cut_to_a_short_length_bucket(split, tmp_path):
    """The input pipeline cuts rows from the left to the smallest length bucket that holds them, which may be
    shorter than the title window (max_title_tokens + 1): the loss and its weight stay those of the full rows."""
    config = llm_rs.LLMRSConfig(**{**SHAPE, "prompt": {"max_prompt_tokens": 64, "max_title_tokens": 80}})
    parts = llm_rs.LLMRSFamily(config, split.dataset.catalog, tmp_path)
    model = parts.create(nnx.Rngs(0))
    histories, targets, _ = split.training_examples(5)
    histories = np.where(np.arange(histories.shape[1]) == histories.shape[1] - 1, histories, 0)[:6]  # one item each
    rows = parts.prompts.training_rows(histories, targets[:6])
    full_loss, full_aux = parts.loss(model, {k: jnp.asarray(v) for k, v in rows.items()}, jax.random.key(0))
    needed = int((rows["mask"].shape[1] - np.argmax(rows["mask"], axis=1)).max())  # longest real row
    assert needed < parts.target_positions  # the case under test: a bucket shorter than the title window
    for length in (needed, needed + 1, (needed + parts.target_positions) // 2, parts.target_positions,
                   parts.target_positions + 1):
        cut = {name: jnp.asarray(value[:, -length:]) for name, value in rows.items()}
        loss, aux = parts.loss(model, cut, jax.random.key(0))
        assert float(aux["weight"]) == float(full_aux["weight"]), length
        assert float(loss) == pytest.approx(float(full_loss), rel=1e-5), length


def test_title_beam_search_ranks_every_title_exactly(parts, split):
    """12 titles, 16 beams: the ranking is every title by its exact teacher-forced log-probability."""
    model = parts.create(nnx.Rngs(1))
    histories = split.histories("test", 5)[:3]
    ranked = np.asarray(jax.jit(lambda h: parts.recommend(model, h, 16))(jnp.asarray(histories)))
    titles = parts.titles.sequences
    assert len(titles) == 12 and np.all(ranked[:, 12:] == -1)  # only 12 titles exist
    prompt_ids, prompt_mask, _ = build_prompts(parts.prompts.tables(), jnp.asarray(histories))
    for row in range(3):
        scores = []
        for title in titles:
            ids = np.concatenate([np.asarray(prompt_ids[row]), [parts.prompts.start_token], title[:-1]])
            mask = np.concatenate([np.asarray(prompt_mask[row]), np.ones(len(title), np.int32)])
            _, logits = model(jnp.asarray(ids[None]), jnp.asarray(mask[None]))
            log_probs = np.asarray(jax.nn.log_softmax(logits[0], axis=-1))
            start = len(prompt_ids[row])
            scores.append(sum(log_probs[start + i, token] for i, token in enumerate(title)))
        expected = parts.titles.first_item[np.argsort(-np.asarray(scores), kind="stable")]
        assert list(ranked[row, :12]) == list(expected)


def test_unconstrained_title_decoding_reports_invalid_beams(split, tmp_path):
    """constrained=False searches the whole vocabulary until EOS: an untrained model spells no catalogue title, so
    every slot is -1 (what invalid_rate@K counts); the constrained search fills every slot with a title's item."""
    histories = jnp.asarray(split.histories("test", 5)[:3])
    ranked = {}
    for constrained in (True, False):
        parts = llm_rs.LLMRSFamily(llm_rs.LLMRSConfig(**SHAPE, constrained=constrained), split.dataset.catalog,
                                   tmp_path / str(constrained))
        ranked[constrained] = np.asarray(parts.recommend(parts.create(nnx.Rngs(1)), histories, 10))
    assert np.all(ranked[True] >= 1)
    assert np.all(ranked[False] == -1), ranked[False]


def test_training_through_the_registry_and_restoring(split, tmp_path):
    entry = llm_rs.config_entry(SHAPE, batch_size=32, num_steps=24, eval_every_steps=12, log_every_steps=1,
                                eval_batch_size=64, eval_ks=(1, 5, 10), optimizer={"learning_rate": 1e-2},
                                progress=False, tensorboard=False, async_checkpointing=False,
                                bucket_lengths=(48, 81))
    config = ml_collections.ConfigDict(entry)
    recommender, parameters = registry.build("llm", config, split, tmp_path)
    assert parameters["frozen"] == 0 and parameters["trainable"] == parameters["total"] > 0  # from scratch
    assert parameters["components"] == {"lora": 0, "llm": parameters["total"]}
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    losses = [r["train/loss"] for r in records if "train/loss" in r]
    assert len(losses) == 24 and all(math.isfinite(x) for x in losses)
    assert np.mean(losses[-4:]) < losses[0] - 1.0, losses
    assert (tmp_path / "tokenizer" / "tokenizer.json").exists()
    metrics = evaluate(recommender, split, "test", max_history=5, ks=(10,))
    assert metrics["invalid_rate@10"] == 0.0
    assert metrics["title_recall@10"] >= metrics["recall@10"]  # a shared title is a hit for every item behind it
    # The title trie, prompt tables and title items are frozen state, handed to the compiled programs as arguments.
    tables = {".".join(map(str, path)): v.get_value() for path, v in nnx.to_flat_state(recommender.trainer.frozen)
              if path[0] == "tables"}
    assert {"tables.trie.child_token", "tables.prompts.lines", "tables.first_item"} <= set(tables)
    assert tables["tables.first_item"].shape == (12,)
    restored = registry.load("llm", config, split, tmp_path)  # reuses the saved tokenizer
    histories = split.histories("test", 5)
    np.testing.assert_array_equal(restored.recommend(histories, 10), recommender.recommend(histories, 10))


def test_a_run_directory_keeps_its_tokenizer_only_for_the_same_texts_and_size(split, tmp_path):
    catalog = split.dataset.catalog
    first = llm_rs.LLMRSFamily(llm_rs.LLMRSConfig(**SHAPE), catalog, tmp_path)
    again = llm_rs.LLMRSFamily(llm_rs.LLMRSConfig(**SHAPE), catalog, tmp_path)  # reused
    assert again.tokenizer.get_vocab() == first.tokenizer.get_vocab()
    with pytest.raises(ConfigError, match=r"another vocabulary size \(vocab_size 400, this config: 350\)"):
        llm_rs.LLMRSFamily(llm_rs.LLMRSConfig(**{**SHAPE, "tokenizer_vocab_size": 350}), catalog, tmp_path)
    with pytest.raises(ConfigError, match="another catalogue or prompt template"):
        llm_rs.LLMRSFamily(llm_rs.LLMRSConfig(**{**SHAPE, "prompt": {**PROMPT, "answer": "Buy next:"}}), catalog,
                           tmp_path)


def test_config_checks():
    with pytest.raises(ValueError, match="mode"):
        llm_rs.LLMRSConfig(mode="prefix_tuning")
    with pytest.raises(ValueError, match="checkpoint"):
        llm_rs.LLMRSConfig(mode="full")
    with pytest.raises(ValueError, match="unknown shape"):
        llm_rs.LLMRSConfig(shape="qwen3-70b")
    with pytest.raises(ValueError, match="unknown LLM-as-RS"):
        llm_rs.config_entry({"layers": 3})


def test_lora_and_full_modes_on_a_hugging_face_checkpoint(split, tmp_path):
    """A tiny Qwen3 checkpoint folder with its own tokenizer: the family loads both, LoRA starts as the checkpoint's
    exact function (logits = transformers' within 1e-5) and training leaves its weights untouched; a checkpoint
    whose vocabulary is smaller than its tokenizer's is refused."""
    import torch
    from _hf_fixtures import qwen3_causal_lm, save

    from jaxrec.text.item_text import item_texts
    from jaxrec.text.tokenizer import train_tokenizer
    from jaxrec.train.trainer import Trainer
    from _multidevice_worker import tiny_train_config

    texts, _ = item_texts(split.dataset.catalog, ("{title}",))
    tokenizer = train_tokenizer(texts * 5, 300, tmp_path / "ckpt")
    reference = qwen3_causal_lm(vocab_size=len(tokenizer))
    save(reference, tmp_path / "ckpt")
    config = llm_rs.LLMRSConfig(mode="lora", checkpoint=str(tmp_path / "ckpt"), max_history=5, lora_rank=2,
                                prompt=PROMPT)
    family = llm_rs.family(config, split, tmp_path / "run")
    trainer = Trainer(family, tiny_train_config(batch_size=8, num_steps=2), tmp_path / "run")
    state = trainer.init_state(2)
    columns = family.training_columns(split)
    batch = {name: jnp.asarray(value[:8]) for name, value in columns.items()}
    model = nnx.merge(trainer._graphdef, state.params, trainer.frozen)
    _, logits = model(batch["tokens"], batch["mask"])
    with torch.no_grad():
        expected = reference(input_ids=torch.tensor(np.asarray(batch["tokens"]), dtype=torch.long),
                             attention_mask=torch.tensor(np.asarray(batch["mask"]), dtype=torch.long)).logits
    real = np.asarray(batch["mask"]).astype(bool)
    assert np.abs(np.asarray(logits)[real] - expected.numpy()[real]).max() <= 1e-5
    frozen = [np.asarray(x) for x in jax.tree.leaves(trainer.frozen)]
    state, metrics = trainer.train_step(state, batch)
    assert np.isfinite(float(metrics["loss"]))
    assert all(np.array_equal(a, np.asarray(b)) for a, b in zip(frozen, jax.tree.leaves(trainer.frozen)))
    full = llm_rs.family(dataclasses.replace(config, mode="full"), split, tmp_path / "full")
    assert full.trainable is nnx.Param
    small = qwen3_causal_lm(vocab_size=200)
    save(small, tmp_path / "small")
    tokenizer.save_pretrained(tmp_path / "small")
    with pytest.raises(ValueError, match="smaller than the tokenizer"):
        llm_rs.family(dataclasses.replace(config, checkpoint=str(tmp_path / "small")), split, tmp_path / "s")


def test_fsdp_and_tensor_parallel_training_matches_one_device(tmp_path, tmp_path_factory):
    """On 8 fake devices (data 2 x fsdp 2 x tensor 2) a tiny LLM-as-RS, from scratch, with LoRA on a random base,
    and with LoRA plus CF injection (the projection trained beside the adapters), is laid out as its logical axes
    say (projections and MLP split over fsdp and tensor, LoRA adapters like the kernels they adapt, the CF
    projection over fsdp), and trains to the same losses, parameters and recommendations as on one device."""
    import subprocess
    import sys
    from pathlib import Path

    from test_mesh import session_cache_dir, worker_env

    out = tmp_path / "report.json"
    worker = Path(__file__).resolve().parent / "_multidevice_worker.py"
    proc = subprocess.run([sys.executable, str(worker), "llm", str(out)], capture_output=True, text=True,
                          env=worker_env(8, session_cache_dir(tmp_path_factory)), timeout=600)
    assert proc.returncode == 0, proc.stderr[-6000:]
    report = json.loads(out.read_text())["llm"]
    params = np.load(out.with_suffix(".npz"))
    assert report["device_count"] == 8
    for mode in ("scratch", "lora", "cf"):
        single = report[f"{mode}/single"]
        for mesh in ("data2_fsdp2_tensor2",):
            run = report[f"{mode}/{mesh}"]
            specs = run["specs"]
            for name, spec in specs.items():
                if spec["expected"] is not None:
                    assert spec["actual"] == spec["expected"], (mode, mesh, name, spec)
            # The big kernels really are split: attention heads and MLP over tensor, embed over fsdp.
            query = next(s for n, s in specs.items() if n.endswith("attention.query.kernel")
                         or n.endswith("attention.query.base.kernel"))
            assert query["actual"] == ["fsdp", "tensor", None], query
            if mode in ("lora", "cf"):
                adapters = {n: s for n, s in specs.items() if "lora_" in n}
                assert adapters and all(s["kind"] == "trainable" for s in adapters.values())
                projection = {n: s for n, s in specs.items() if n.startswith("cf_projection.")}
                assert bool(projection) == (mode == "cf")
                assert all(s["kind"] == "trainable" and s["actual"] == [None, "fsdp"] for s in projection.values())
                assert all(s["kind"] == "frozen" for n, s in specs.items() if "lora_" not in n and n not in projection)
                lora_a = next(s for n, s in adapters.items() if n.endswith("query.lora_a"))
                assert lora_a["actual"] == ["fsdp", None], lora_a
            # The SASRec equivalence test's tolerances (same optimizer, same learning rate).
            np.testing.assert_allclose(run["losses"], single["losses"], rtol=1e-5, atol=1e-6)
            assert run["ranked"] == single["ranked"]
            for key in params.files:
                if key.startswith(f"{mode}/single/"):
                    other = key.replace("/single/", f"/{mesh}/")
                    np.testing.assert_allclose(params[other], params[key], rtol=1e-5, atol=1e-5, err_msg=other)
        assert single["losses"][-1] < single["losses"][0]  # training moved (the comparison is not vacuous)
