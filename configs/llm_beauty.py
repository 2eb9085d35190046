"""LLM-as-RS on Amazon Beauty 2014 trained from scratch on a 2-core CPU: a small Qwen3-shaped decoder reads the
titles of a user's recent items and generates the next title under the trie of Beauty's titles.

    jaxrec run --config configs/llm_beauty.py --workdir runs/llm_beauty [--config.data.path=...]
    python -m benchmarks.llm_beauty    # the same run, recorded next to TIGER's results

No pretrained LLM weights exist on the machines this was built on, so the model is trained from scratch: Qwen3
blocks (hidden 256, SwiGLU 768, 4 layers, 8 query / 4 key-value heads of 32, tied embeddings; 4.2M parameters with
the 4,096-token byte-level BPE trained on the catalogue's titles). The sizes are set by the CPU budget, not by
quality: prompts keep the most recent titles within 160 tokens (about 7 items), titles are cut at 32 tokens (the
mean is 18), the beam is 10 (enough for Recall@10 / NDCG@10), and training stops after `max_train_seconds`
(40 minutes) with the cosine schedule sized to about that many steps. In-training validation scores a fixed sample
of 1,000 users (`eval_max_users`), which chooses the checkpoint; the final evaluation scores every test user
(`eval.stages`: the test split only, to spare the CPU a second full pass).
With a checkpoint (`--config.models.llm.model.mode=lora --config.models.llm.model.checkpoint=/path/Qwen3-0.6B`)
the same config fine-tunes a pretrained model with its own tokenizer.
"""

import ml_collections

from jaxrec.models import llm_rs
from jaxrec.train.defaults import distributed_config


def get_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.distributed = distributed_config()
    config.data = ml_collections.ConfigDict({"source": "p5", "path": "../shared/data/amazon-beauty-2014",
                                             "on_short": "error", "options": {}})
    # The full evaluation is the test split only: the checkpoint is chosen on the in-training validation sample.
    config.eval = ml_collections.ConfigDict({"ks": (1, 5, 10), "max_history": 20, "cold_start": True,
                                             "stages": ("test",)})
    prompt = {"max_prompt_tokens": 160, "max_title_tokens": 32}
    config.models = ml_collections.ConfigDict({
        "llm": llm_rs.config_entry(
            {"tokenizer_vocab_size": 4096, "hidden_size": 256, "intermediate_size": 768, "num_layers": 4,
             "num_heads": 8, "num_kv_heads": 4, "head_dim": 32, "max_history": 20, "beam_width": 10,
             "prompt": prompt},
            batch_size=32, num_steps=2400, max_train_seconds=2400.0, bucket_lengths=(97, 145, 193),
            optimizer={"learning_rate": 2e-3, "weight_decay": 0.01, "schedule": "warmup_cosine",
                       "warmup_steps": 200, "end_lr_ratio": 0.05},
            eval_every_steps=600, eval_max_users=1000, eval_ks=(1, 5, 10), eval_batch_size=128,
            early_stopping={"metric": "recall@10", "patience": 3}, log_every_steps=50),
    })
    return config
