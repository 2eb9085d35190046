"""TIGER on the embedded synthetic store: a small encoder-decoder over 3 x 64 SIDs, minutes on a laptop CPU.

    jaxrec run --config configs/tiger_synthetic.py --workdir runs/tiger_synthetic
    (--config.models.tiger.model.architecture=decoder_only for the decoder-only variant)
"""

from pathlib import Path

import ml_collections

from jaxrec.config import load_config
from jaxrec.models import tiger
from jaxrec.train.defaults import distributed_config


def get_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.distributed = distributed_config()
    sid = load_config(Path(__file__).with_name("sid_synthetic.py"))
    config.data = sid.data
    config.sid = sid.sid
    config.eval = ml_collections.ConfigDict({"ks": (1, 5, 10, 20), "max_history": 20, "cold_start": True})
    config.models = ml_collections.ConfigDict({
        "tiger": tiger.config_entry(
            {"num_layers": 2, "d_model": 64, "num_heads": 4, "d_kv": 16, "d_ff": 256, "mlp_layers": 1,
             "max_history": 20, "beam_width": 20},
            batch_size=256, num_epochs=15, bucket_lengths=(5, 10, 20),
            optimizer={"learning_rate": 3e-3, "weight_decay": 0.01, "schedule": "warmup_cosine",
                       "warmup_steps": 100, "end_lr_ratio": 0.05},
            early_stopping={"metric": "recall@10", "patience": 3}),
    })
    return config
