"""Collaborative-filtering injection on the embedded synthetic store: SASRec is trained first, then a tiny
Qwen3-shaped LLM-as-RS reads each history item's title with that SASRec's item embedding, projected to the LLM's
width, added at a slot token opening the item's line (`cf_source="sasrec"`); minutes on a laptop CPU.

    jaxrec run --config configs/llm_cf_synthetic.py --workdir runs/llm_cf_synthetic

The base of experiments/cf_injection.py. `--config.models.llm.model.cf_source=` (empty) is the no-CF control.
"""

import ml_collections

from jaxrec.models import llm_rs, sasrec
from jaxrec.train.defaults import distributed_config


def get_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.distributed = distributed_config()
    config.data = ml_collections.ConfigDict({"source": "synthetic", "path": "", "on_short": "drop",
                                             "train_fraction": 1.0,
                                             "options": {"num_users": 3000, "num_items": 1200, "seed": 0}})
    config.eval = ml_collections.ConfigDict({"ks": (1, 5, 10, 20), "max_history": 20, "cold_start": True})
    # Synthetic titles are ~10 tokens (+1 CF slot each); 10 history lines fit in 128 prompt tokens.
    prompt = {"max_prompt_tokens": 128, "max_title_tokens": 24}
    config.models = ml_collections.ConfigDict({
        "sasrec": sasrec.config_entry({"hidden": 64, "dropout": 0.2, "attention_dropout": 0.2}, batch_size=128,
                                      num_epochs=20, bucket_lengths=(8, 16, 32, 51)),
        "llm": llm_rs.config_entry(
            {"tokenizer_vocab_size": 1024, "hidden_size": 64, "intermediate_size": 192, "num_layers": 2,
             "num_heads": 4, "num_kv_heads": 2, "head_dim": 16, "max_history": 10, "beam_width": 20,
             "prompt": prompt, "cf_source": "sasrec"},
            batch_size=64, num_epochs=4, bucket_lengths=(64, 96, 153),
            optimizer={"learning_rate": 3e-3, "weight_decay": 0.01, "schedule": "warmup_cosine",
                       "warmup_steps": 100, "end_lr_ratio": 0.05},
            eval_batch_size=256, early_stopping={"metric": "recall@10", "patience": 3}),
    })
    return config
