"""LLM-as-RS on the embedded synthetic store: a tiny Qwen3-shaped decoder trained from scratch (byte-level BPE on
the catalogue's titles) that generates the next title under the title trie; minutes on a laptop CPU.

    jaxrec run --config configs/llm_synthetic.py --workdir runs/llm_synthetic
"""

import ml_collections

from jaxrec.models import llm_rs
from jaxrec.train.defaults import distributed_config


def get_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.distributed = distributed_config()
    config.data = ml_collections.ConfigDict({"source": "synthetic", "path": "", "on_short": "drop",
                                             "train_fraction": 1.0,
                                             "options": {"num_users": 3000, "num_items": 1200, "seed": 0}})
    config.eval = ml_collections.ConfigDict({"ks": (1, 5, 10, 20), "max_history": 20, "cold_start": True})
    # Synthetic titles are ~10 tokens; 10 history lines fit in 128 prompt tokens.
    prompt = {"max_prompt_tokens": 128, "max_title_tokens": 24}
    config.models = ml_collections.ConfigDict({
        "llm": llm_rs.config_entry(
            {"tokenizer_vocab_size": 1024, "hidden_size": 64, "intermediate_size": 192, "num_layers": 2,
             "num_heads": 4, "num_kv_heads": 2, "head_dim": 16, "max_history": 10, "beam_width": 20,
             "prompt": prompt},
            batch_size=64, num_epochs=4, bucket_lengths=(64, 96, 153),
            optimizer={"learning_rate": 3e-3, "weight_decay": 0.01, "schedule": "warmup_cosine",
                       "warmup_steps": 100, "end_lr_ratio": 0.05},
            eval_batch_size=256, early_stopping={"metric": "recall@10", "patience": 3}),
    })
    return config
