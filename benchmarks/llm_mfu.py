"""Model-FLOPs utilisation of our LLM train step: a Qwen3-shaped decoder (random weights, the real 151,936-token
vocabulary), full fine-tuning (every weight trained, AdamW), bf16 compute with fp32 master weights, causal-LM loss
over every position of `--seq`-token rows, through the shared `Trainer` (the step `jaxrec run` uses).

    python -m benchmarks.llm_mfu [--shape qwen3-0.6b] [--seq 512] [--batch 16] [--steps 10] [--peak-tflops 989]

MFU = model FLOPs per step / (step seconds x peak). Model FLOPs follow PaLM (Chowdhery et al. 2022, appendix B):
6 N per token for the weight matmuls (N = every parameter used in a matmul: the layers and the LM head; the input
embedding is a gather) plus 6 L H Q T per token for causal attention's two matmuls (half of PaLM's 12 L H Q T,
since only the lower triangle is needed; the uncut figure is recorded too).
`--peak-tflops` is the accelerator's dense bf16 peak (H100 SXM and H200: 989). Target (LLM-as-RS issue): on one
H100, Qwen3-0.6B shape, sequence 512, bf16: >= 40%. On a CPU, use `--shape tiny` as a smoke run only.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile

import numpy as np

from benchmarks.record import record
from benchmarks.timing import train_step_times

TINY = {"hidden_size": 64, "intermediate_size": 192, "num_layers": 2, "num_heads": 4, "num_kv_heads": 2,
        "head_dim": 16, "tie_word_embeddings": True}


def model_flops_per_step(shape: dict, vocab: int, batch: int, seq: int) -> dict[str, float]:
    """PaLM-style training FLOPs of one step, with causal and full attention."""
    h, layers = shape["hidden_size"], shape["num_layers"]
    q_dim, kv_dim = shape["num_heads"] * shape["head_dim"], shape["num_kv_heads"] * shape["head_dim"]
    per_layer = h * (q_dim + 2 * kv_dim) + q_dim * h + 3 * h * shape["intermediate_size"]
    matmul_params = layers * per_layer + h * vocab  # the LM head (tied or not) is a matmul
    tokens = batch * seq
    dense = 6.0 * matmul_params * tokens
    attention_full = 12.0 * layers * q_dim * seq * tokens
    return {"matmul_parameters": matmul_params, "dense": dense, "causal": dense + attention_full / 2,
            "full_attention": dense + attention_full}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--shape", default="qwen3-0.6b", help="a qwen.QWEN3_SHAPES name, or 'tiny' (CPU smoke)")
    parser.add_argument("--seq", type=int, default=512)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--peak-tflops", type=float, default=989.0)
    args = parser.parse_args()

    import jax
    import jax.numpy as jnp

    from jaxrec.models import qwen
    from jaxrec.models.qwen import Qwen, QwenConfig
    from jaxrec.train.defaults import train_config
    from jaxrec.train.trainer import ModelFamily, Trainer

    shape = TINY if args.shape == "tiny" else qwen.QWEN3_SHAPES[args.shape]
    vocab = 4096 if args.shape == "tiny" else qwen.QWEN3_VOCAB
    config = QwenConfig(vocab_size=vocab, dtype="bfloat16", rope_theta=1_000_000.0, **shape)

    def loss(model: Qwen, batch: dict, rng: jax.Array) -> tuple[jax.Array, dict]:
        """Next-token cross-entropy over every position (fp32 logits)."""
        tokens = batch["tokens"]
        logits = model.logits(model.hidden_states(tokens, jnp.ones_like(tokens)))[:, :-1]
        labels = tokens[:, 1:]
        nll = jax.nn.logsumexp(logits, axis=-1) - jnp.take_along_axis(logits, labels[..., None], axis=-1)[..., 0]
        return nll.mean(), {}

    family = ModelFamily(name="qwen_lm", create=lambda rngs: Qwen(config, rngs=rngs), loss=loss,
                         recommend=lambda model, histories, k: histories[:, :k], training_columns=lambda split: {})
    train = train_config(batch_size=args.batch, compute_dtype="bfloat16", tensorboard=False, progress=False,
                         async_checkpointing=False, optimizer={"learning_rate": 1e-4, "weight_decay": 0.01})
    rng = np.random.default_rng(0)
    batches = [{"tokens": rng.integers(0, vocab, (args.batch, args.seq), dtype=np.int32)}
               for _ in range(args.warmup + args.steps)]
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(family, train, tmp)
        state = trainer.init_state(len(batches))
        times, state = train_step_times(trainer, state, batches, args.warmup)
    step = statistics.median(times)
    flops = model_flops_per_step(shape, vocab, args.batch, args.seq)
    peak = args.peak_tflops * 1e12 * jax.device_count()
    results = {"shape": args.shape, "vocab": vocab, "seq": args.seq, "batch": args.batch,
               "parameters": qwen.count_parameters(config), "devices": jax.device_count(),
               "backend": jax.default_backend(), "step_median_s": step, "steps_timed": len(times),
               "tokens_per_s": args.batch * args.seq / step, "peak_tflops_per_device": args.peak_tflops,
               "model_flops_per_step": flops["causal"], "mfu": flops["causal"] / (step * peak),
               "mfu_full_attention_flops": flops["full_attention"] / (step * peak),
               "matmul_parameters": flops["matmul_parameters"]}
    print({k: v for k, v in results.items() if k != "parameters"})
    if args.shape == "tiny":  # a smoke run checks the script; it is no measurement worth a record
        return
    record("llm_mfu", results, command="python -m benchmarks.llm_mfu " + " ".join(
        f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items()))


if __name__ == "__main__":
    main()
