"""The safetensors loader: strict key maps (unmapped, missing, doubly-filled, mis-shaped tensors), tied copies,
sharded and bfloat16 checkpoints, sharded placement on a mesh, and the weights hash."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest
import torch
import transformers
from _hf_fixtures import (
    batch,
    exact_matmuls,  # noqa: F401 (autouse fixture)
    max_diff,
    qwen3_causal_lm,
    save,
)
from flax import nnx
from safetensors.numpy import save_file

from jaxrec.models import hf_loading, qwen
from jaxrec.models.hf_loading import FLAT, CheckpointError, KeyRule, Linear, ignore
from jaxrec.nn.layers import Dense, Embed, RMSNorm

REPO = Path(__file__).resolve().parent.parent


class Tiny(nnx.Module):
    def __init__(self, rngs: nnx.Rngs):
        self.tokens = Embed(10, 4, rngs=rngs)
        self.proj = Dense((4,), (2, 3), ("embed", "heads", "kv"), rngs=rngs)  # HF: weight [6, 4], bias [6]
        self.norm = RMSNorm(4, rngs=rngs)


RULES = [
    KeyRule(r"embed\.weight", "tokens.embedding"),
    KeyRule(r"decoder_embed\.weight", "tokens.embedding", tied=True),
    KeyRule(r"proj\.weight", "proj.kernel", Linear(1)),
    KeyRule(r"proj\.bias", "proj.bias", FLAT),
    KeyRule(r"norm\.weight", "norm.scale"),
    ignore(r"pooler\..*", "not used"),
]


def _tensors(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"embed.weight": rng.normal(size=(10, 4)).astype(np.float32),
            "proj.weight": rng.normal(size=(6, 4)).astype(np.float32),
            "proj.bias": rng.normal(size=(6,)).astype(np.float32),
            "norm.weight": rng.normal(size=(4,)).astype(np.float32),
            "pooler.dense.weight": np.zeros((4, 4), np.float32)}


def _write(folder: Path, tensors: dict[str, np.ndarray]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(folder / "model.safetensors"))
    return folder


def _load(folder: Path, rules=RULES) -> Tiny:
    return hf_loading.load_pretrained(lambda: Tiny(nnx.Rngs(0)), folder, rules)


def test_key_map_fills_every_parameter_with_its_layout(tmp_path):
    tensors = _tensors()
    model = _load(_write(tmp_path, tensors))
    np.testing.assert_array_equal(model.tokens.embedding[...], tensors["embed.weight"])
    np.testing.assert_array_equal(model.proj.kernel[...], tensors["proj.weight"].T.reshape(4, 2, 3))
    np.testing.assert_array_equal(model.proj.bias[...], tensors["proj.bias"].reshape(2, 3))
    concrete = hf_loading.load_weights(Tiny(nnx.Rngs(1)), tmp_path, RULES)  # a built model is overwritten
    np.testing.assert_array_equal(concrete.norm.scale[...], tensors["norm.weight"])
    x = np.arange(4, dtype=np.float32)
    np.testing.assert_allclose(np.asarray(model.proj(jnp.asarray(x))).reshape(6),
                               tensors["proj.weight"] @ x + tensors["proj.bias"], atol=1e-6)


def test_unmapped_tensor_is_an_error_naming_folder_and_key(tmp_path):
    folder = _write(tmp_path, {**_tensors(), "mystery.weight": np.zeros(3, np.float32)})
    with pytest.raises(CheckpointError, match=rf"{tmp_path}.*map to no model parameter: 'mystery\.weight'"):
        _load(folder)


def test_missing_tensor_is_an_error_naming_the_parameter(tmp_path):
    tensors = _tensors()
    del tensors["norm.weight"]
    with pytest.raises(CheckpointError, match=rf"{tmp_path}.*missing from the checkpoint: 'norm\.scale'"):
        _load(_write(tmp_path, tensors))


def test_shape_mismatch_is_an_error_naming_key_and_shapes(tmp_path):
    tensors = {**_tensors(), "proj.weight": np.zeros((4, 6), np.float32)}  # not transposed
    with pytest.raises(CheckpointError, match=r"'proj\.weight' has shape \[4, 6\], expected \[6, 4\] for parameter "
                                              r"'proj\.kernel' of shape \[4, 2, 3\]"):
        _load(_write(tmp_path, tensors))


def test_tied_copy_fills_only_what_nothing_else_fills(tmp_path):
    tensors = _tensors()
    other = np.full((10, 4), 7.0, np.float32)
    model = _load(_write(tmp_path / "both", {**tensors, "decoder_embed.weight": other}))
    np.testing.assert_array_equal(model.tokens.embedding[...], tensors["embed.weight"])
    del tensors["embed.weight"]
    model = _load(_write(tmp_path / "copy_only", {**tensors, "decoder_embed.weight": other}))
    np.testing.assert_array_equal(model.tokens.embedding[...], other)


def test_key_map_mistakes_are_errors(tmp_path):
    folder = _write(tmp_path, _tensors())
    twice = RULES + [KeyRule(r"pooler\.dense\.weight", "norm.scale")]
    with pytest.raises(CheckpointError, match="both fill parameter 'norm.scale'"):
        _load(folder, [twice[-1], *RULES])
    with pytest.raises(CheckpointError, match="which the model does not have"):
        _load(folder, [KeyRule(r"pooler\..*", "pooler.kernel"), *RULES])
    with pytest.raises(ValueError, match="needs a reason"):
        KeyRule(r"x", None)


def test_unusable_folders_are_clear_errors(tmp_path):
    (tmp_path / "pytorch_model.bin").write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"no model\.safetensors.*pytorch_model\.bin"):
        _load(tmp_path)
    truncated = _write(tmp_path / "truncated", _tensors())
    data = (truncated / "model.safetensors").read_bytes()
    (truncated / "model.safetensors").write_bytes(data[:-8])
    with pytest.raises(CheckpointError, match="inconsistent byte offsets"):
        _load(truncated)
    index = tmp_path / "index"
    index.mkdir()
    (index / hf_loading.INDEX_FILE).write_text(json.dumps({"weight_map": {"a": "model-00001-of-00002.safetensors"}}))
    with pytest.raises(CheckpointError, match="shard.*do not exist"):
        _load(index)


def test_sharded_bfloat16_checkpoint(tmp_path):
    """bf16 tensors across several shards load exactly (into fp32 or bf16 parameters), and the model matches HF
    computing in fp32 with the same bf16-rounded weights."""
    reference = qwen3_causal_lm(tie_word_embeddings=False).to(torch.bfloat16)
    folder = save(reference, tmp_path, max_shard_size="20KB")
    shards = hf_loading.weight_files(folder)
    assert (folder / hf_loading.INDEX_FILE).is_file() and len(shards) >= 3
    assert {info.dtype for info in hf_loading.read_index(folder).values()} == {"BF16"}

    model = qwen.load(folder)
    expected = reference.lm_head.weight.detach().float().numpy()
    np.testing.assert_array_equal(np.asarray(model.lm_head.kernel[...]), expected.T)
    as_bf16 = qwen.load(folder, dtype="bfloat16")
    assert as_bf16.lm_head.kernel[...].dtype == jnp.bfloat16
    np.testing.assert_array_equal(np.asarray(as_bf16.lm_head.kernel[...]), expected.T.astype(ml_dtypes.bfloat16))

    fp32_reference = transformers.Qwen3ForCausalLM.from_pretrained(folder, dtype=torch.float32,
                                                                   attn_implementation="eager").eval()
    ids, mask = batch([12, 5])
    with torch.no_grad():
        logits = fp32_reference(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask)).logits
    assert max_diff(model(jnp.asarray(ids), jnp.asarray(mask))[1], logits, mask) <= 1e-5


def test_weights_hash(tmp_path):
    tensors = _tensors()
    first, second = _write(tmp_path / "a", tensors), _write(tmp_path / "b", tensors)
    digest = hf_loading.weights_hash(first)
    assert len(digest) == 64 and digest == hf_loading.weights_hash(second) == hf_loading.weights_hash(first)
    tensors["norm.weight"] = tensors["norm.weight"] + 1
    assert hf_loading.weights_hash(_write(tmp_path / "c", tensors)) != digest


_MESH_CHECK = """
import json, sys
import numpy as np, jax.numpy as jnp
from jaxrec.models import qwen
from jaxrec.train.mesh import make_mesh, sharding_context
folder, ids, mask = sys.argv[1], np.load(sys.argv[2])["ids"], np.load(sys.argv[2])["mask"]
with sharding_context(make_mesh({"fsdp": 2, "tensor": 2})):
    model = qwen.load(folder)
    specs = {name: tuple(getattr(model, "layers")[0].attention.__getattribute__(name).kernel[...].sharding.spec)
             for name in ("query", "key", "out")}
    specs["mlp.up"] = tuple(model.layers[0].mlp.up.kernel[...].sharding.spec)
    specs["lm_head"] = tuple(model.lm_head.kernel[...].sharding.spec)
    logits = np.asarray(model(jnp.asarray(ids), jnp.asarray(mask))[1])
np.save(sys.argv[3], logits)
print(json.dumps({k: [str(x) for x in v] for k, v in specs.items()}))
"""


def test_loading_under_a_mesh_places_parameters_sharded(tmp_path):
    """On 4 fake CPU devices under a (fsdp=2, tensor=2) mesh the abstract model is filled with sharded arrays (by
    the logical axis names) and computes the same logits as the single-device load."""
    folder = save(qwen3_causal_lm(tie_word_embeddings=False), tmp_path / "ckpt")
    ids, mask = batch([9, 4])
    np.savez(tmp_path / "batch.npz", ids=ids, mask=mask)
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu")
    proc = subprocess.run([sys.executable, "-c", _MESH_CHECK, str(folder), str(tmp_path / "batch.npz"),
                           str(tmp_path / "logits.npy")], env=env, cwd=REPO, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    specs = json.loads(proc.stdout.strip().splitlines()[-1])
    assert specs == {"query": ["fsdp", "tensor", "None"], "key": ["fsdp", "tensor", "None"],
                     "out": ["tensor", "None", "fsdp"], "mlp.up": ["fsdp", "tensor"], "lm_head": ["fsdp", "tensor"]}
    single = qwen.load(folder)
    expected = np.asarray(single(jnp.asarray(ids), jnp.asarray(mask))[1])
    assert max_diff(np.load(tmp_path / "logits.npy"), expected, mask) <= 1e-5
