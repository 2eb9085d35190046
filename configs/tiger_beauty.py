"""TIGER (encoder-decoder over Semantic IDs) on Amazon Beauty 2014, GRID's recipe: the paper's 13M model.

    jaxrec run --config configs/tiger_beauty.py --workdir runs/tiger_beauty [--config.data.path=...]

The SID stage is configs/sid_beauty.py's (MiniLM on title + categories, RQ-KMeans 3 x 256 + collision digit),
built under <workdir>/sid. Model (`tiger.TIGERConfig` defaults): 4 encoder + 4 decoder T5 layers, d_model 128,
6 heads of 64, d_ff 1024 with GRID's second hidden layer (mlp_layers=2), ReLU, dropout 0.1: 13.1M parameters with
4 x 256 SID tokens. Training (TIGER/GRID): every training prefix of at most 20 items predicts its next item,
batch 256; AdamW at 1e-3 with 1,000 warm-up steps and cosine decay to 5% (GRID trains with AdamW + warm-up-cosine;
its released configs use 3e-4 to 1e-3 at batch 32 per device, TIGER Adagrad at 1e-2; 1e-3 is the step size that
suits batch 256 among those), weight decay 0.01; beam 20; early stopping on validation recall@10.
Variants: --config.models.tiger.model.architecture=decoder_only, sizes from `tiger.TABLE2_SIZES`
(--config.models.tiger.model.num_layers=7 ...).
"""

from pathlib import Path

import ml_collections

from jaxrec.config import load_config
from jaxrec.models import tiger
from jaxrec.train.defaults import distributed_config


def get_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.distributed = distributed_config()
    sid = load_config(Path(__file__).with_name("sid_beauty.py"))  # one definition of Beauty's SIDs
    config.data = sid.data
    config.sid = sid.sid
    config.eval = ml_collections.ConfigDict({"ks": (1, 5, 10, 20), "max_history": 20, "cold_start": True,
                                             "stages": ("validation", "test")})
    config.models = ml_collections.ConfigDict({
        "tiger": tiger.config_entry(
            {"max_history": 20, "beam_width": 20},
            batch_size=256, num_epochs=40, bucket_lengths=(5, 10, 20),
            optimizer={"learning_rate": 1e-3, "weight_decay": 0.01, "schedule": "warmup_cosine",
                       "warmup_steps": 1000, "end_lr_ratio": 0.05},
            eval_batch_size=1024, early_stopping={"metric": "recall@10", "patience": 5}, log_every_steps=100),
    })
    return config
