"""The SID stage end to end with the real MiniLM: batched encoding, artifacts, reuse, mismatch errors, the CLI."""

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from jaxrec.cli import main
from jaxrec.data.synthetic import SyntheticConfig, generate
from jaxrec.sid.build import build_sid, sid_config
from jaxrec.sid.table import SIDTable, SIDTableError
from jaxrec.text.embed import EmbeddingsError, encode_texts, length_buckets, load_embeddings
from jaxrec.text import encoders
from jaxrec.text.encoders import load_text_encoder


@pytest.fixture(scope="module")
def encoder():
    return load_text_encoder("minilm")


@pytest.fixture(scope="module")
def catalog():
    return generate(SyntheticConfig(num_users=200, num_items=150, seed=0)).catalog


def small_config(**quantizer):
    return sid_config(quantizer={"codebook_size": 8, **quantizer}, progress=False)


def test_length_buckets():
    assert length_buckets(256) == [8, 16, 24, 32, 48, 64, 96, 128, 192, 256]
    assert length_buckets(10) == [8, 10]


def test_batched_encoding_matches_one_text_at_a_time(encoder):
    texts = ["lip balm", "A much longer product title with many words, numbers 12 and a category > path " * 3,
             "", "Rose water toner. Categories: Beauty > Skin Care", "nail polish"]
    batched = encode_texts(encoder, texts, tokens_per_batch=64, progress=False)  # forces several buckets
    for text, row in zip(texts, batched):
        ids = encoder.tokenizer([text], truncation=True, max_length=encoder.max_length)["input_ids"][0]
        single = np.asarray(encoder.embed(np.array([ids]), np.ones((1, len(ids)), np.int32)))[0]
        np.testing.assert_allclose(row, single, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(batched, axis=1), 1.0, atol=1e-5)


def test_build_sid_writes_artifacts_and_reuses_them(tmp_path, catalog):
    table, diagnostics = build_sid(small_config(), catalog, tmp_path)
    assert table.codes.shape == (150, 4)
    assert diagnostics["final_sids_unique"] and diagnostics["items"] == 150
    for name in ("embeddings.npy", "embeddings.json", "sid_table.npz", "sid_diagnostics.json"):
        assert (tmp_path / name).is_file()
    header = json.loads((tmp_path / "embeddings.json").read_text())
    assert header["encoder"] == "all-MiniLM-L6-v2" and header["dimension"] == 384 and len(header["weights_hash"]) == 64
    assert table.header["embeddings"]["content_hash"] == header["content_hash"]
    mtime = (tmp_path / "sid_table.npz").stat().st_mtime_ns
    again, _ = build_sid(small_config(), catalog, tmp_path)
    assert (tmp_path / "sid_table.npz").stat().st_mtime_ns == mtime  # reused, not recomputed
    np.testing.assert_array_equal(again.codes, table.codes)
    # A different quantizer config in the same folder is an error, not a silent rebuild.
    with pytest.raises(SIDTableError, match="'quantizer'"):
        build_sid(small_config(levels=2), catalog, tmp_path)
    rebuilt, _ = build_sid(small_config(levels=2), catalog, tmp_path, force=True)
    assert rebuilt.codes.shape == (150, 3)
    # A different template is an error for the embeddings.
    with pytest.raises(EmbeddingsError, match="'template'"):
        build_sid(sid_config(template=("{title}",), quantizer={"codebook_size": 8}), catalog, tmp_path)


def test_embeddings_of_another_pooling_are_not_reused(tmp_path, catalog, monkeypatch):
    """Pooling, normalisation and truncation length live in sentence-transformers' module files, not the weights:
    an encoder folder edited there (same weights hash) does not reuse the earlier embeddings."""
    build_sid(small_config(), catalog, tmp_path)
    load = encoders.load_text_encoder
    for change, field in (({"pooling": "cls"}, "'pooling'"), ({"normalize": False}, "'normalize'"),
                          ({"max_length": 128}, "'max_length'")):
        monkeypatch.setattr(encoders, "load_text_encoder",
                            lambda spec, change=change: dataclasses.replace(load(spec), **change))
        with pytest.raises(EmbeddingsError, match=field):
            build_sid(small_config(), catalog, tmp_path)



def test_prebuilt_table_is_verified_and_copied(tmp_path, catalog):
    """sid.table uses a table built elsewhere (no encoder run), copies it and its diagnostics into the run's
    folder, and refuses a table for another catalogue or quantizer config."""
    built, _ = build_sid(small_config(), catalog, tmp_path / "built")
    config = small_config()
    config.table = str(tmp_path / "built" / "sid_table.npz")
    table, diagnostics = build_sid(config, catalog, tmp_path / "run" / "sid")
    np.testing.assert_array_equal(table.codes, built.codes)
    assert diagnostics["items"] == 150
    assert SIDTable.load(tmp_path / "run" / "sid" / "sid_table.npz").header == built.header
    assert not (tmp_path / "run" / "sid" / "embeddings.npy").exists()
    with pytest.raises(SIDTableError, match="quantizer"):
        other = small_config(levels=2)
        other.table = config.table
        build_sid(other, catalog, tmp_path / "other")
    smaller = generate(SyntheticConfig(num_users=200, num_items=120, seed=0)).catalog
    with pytest.raises(SIDTableError, match="150 items, the catalogue 120"):
        build_sid(config, smaller, tmp_path / "smaller")
    # Another table (other item text, same quantizer config) into the same run folder, with the first table's
    # diagnostics beside it: they describe another table, so neither they nor the folder's earlier ones are used.
    titles_only = sid_config(template=("{title}",), quantizer={"codebook_size": 8}, progress=False)
    another, _ = build_sid(titles_only, catalog, tmp_path / "another")
    assert another.header["content_hash"] != built.header["content_hash"]
    shutil.copyfile(tmp_path / "built" / "sid_diagnostics.json", tmp_path / "another" / "sid_diagnostics.json")
    config.table = str(tmp_path / "another" / "sid_table.npz")
    table, diagnostics = build_sid(config, catalog, tmp_path / "run" / "sid")
    np.testing.assert_array_equal(table.codes, another.codes)
    assert diagnostics == {} and not (tmp_path / "run" / "sid" / "sid_diagnostics.json").exists()

def test_build_sid_is_deterministic(tmp_path, catalog):
    a, _ = build_sid(small_config(), catalog, tmp_path / "a")
    b, _ = build_sid(small_config(), catalog, tmp_path / "b")
    np.testing.assert_array_equal(a.codes, b.codes)
    assert a.header["content_hash"] == b.header["content_hash"]


def test_corrupted_embeddings_are_detected(tmp_path, catalog):
    build_sid(small_config(), catalog, tmp_path)
    embeddings = np.load(tmp_path / "embeddings.npy")
    embeddings[0, 0] += 1.0
    np.save(tmp_path / "embeddings.npy", embeddings)
    with pytest.raises(EmbeddingsError, match="content hash"):
        load_embeddings(tmp_path)


def write_config(tmp_path: Path, codebook_size: int = 8) -> Path:
    path = tmp_path / "sid_tiny.py"
    path.write_text(f'''
import ml_collections
from jaxrec.sid.build import sid_config

def get_config():
    config = ml_collections.ConfigDict()
    config.data = ml_collections.ConfigDict({{"source": "synthetic", "path": "", "on_short": "drop",
                                             "options": {{"num_users": 200, "num_items": 150, "seed": 0}}}})
    config.sid = sid_config(quantizer={{"codebook_size": {codebook_size}}}, progress=False)
    return config
''')
    return path


def test_cli_embed_and_sid(tmp_path, capsys):
    config = write_config(tmp_path)
    workdir = tmp_path / "run"
    assert main(["embed", "--config", str(config), "--workdir", str(workdir)]) == 0
    assert (workdir / "embeddings.npy").is_file() and not (workdir / "sid_table.npz").exists()
    assert main(["sid", "--config", str(config), "--workdir", str(workdir),
                 "--config.sid.quantizer.distinct_last_level=True"]) == 0
    diagnostics = json.loads((workdir / "sid_diagnostics.json").read_text())
    assert diagnostics["final_sids_unique"] and len(diagnostics["levels"]) == 3
    assert SIDTable.load(workdir / "sid_table.npz").header["quantizer"]["distinct_last_level"] is True
    capsys.readouterr()
    # Bad input: a codebook larger than the catalogue is one clear line and exit status 2.
    assert main(["sid", "--config", str(write_config(tmp_path, 512)), "--workdir", str(tmp_path / "big")]) == 2
    assert "larger than the catalogue (150 items)" in capsys.readouterr().err
