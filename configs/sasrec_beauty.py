"""SASRec (full-softmax CE) on Amazon Beauty 2014: the trainer issue's reference run (2-core CPU, <= 20 min).

The data folder is configuration: --config.data.path=/path/to/amazon-beauty-2014
"""

import ml_collections

from jaxrec.models import sasrec
from jaxrec.train.defaults import distributed_config


def get_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.distributed = distributed_config()
    config.data = ml_collections.ConfigDict({"source": "p5", "path": "../shared/data/amazon-beauty-2014",
                                             "on_short": "error", "train_fraction": 1.0,
                                             "options": {}})
    config.eval = ml_collections.ConfigDict({"ks": (1, 5, 10, 20), "max_history": 50,
                                             "cold_start": True})
    config.models = ml_collections.ConfigDict({
        "popularity": {"family": "popularity", "exclude_history": False},
        # lr 3e-3 / dropout 0.3 learn about twice as fast as 1e-3 / 0.5 on this split; validation NDCG@10 peaks
        # near epoch 15, so 18 epochs with patience 3 fit the 20-minute CPU budget.
        "sasrec": sasrec.config_entry(
            {"dropout": 0.3, "attention_dropout": 0.3},
            batch_size=128, num_epochs=18, bucket_lengths=(8, 16, 32, 51),
            optimizer={"learning_rate": 3e-3},  # merged into the default optimizer group
            eval_batch_size=4096, early_stopping={"metric": "ndcg@10", "patience": 3}, log_every_steps=100),
    })
    return config
