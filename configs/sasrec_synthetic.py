"""SASRec (full-softmax CE) on the embedded synthetic store: small and fast on a CPU."""

import ml_collections

from jaxrec.models import sasrec
from jaxrec.train.defaults import distributed_config


def get_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.distributed = distributed_config()
    config.data = ml_collections.ConfigDict({"source": "synthetic", "path": "", "on_short": "drop",
                                             "train_fraction": 1.0,
                                             "options": {"num_users": 3000, "num_items": 1200, "seed": 0}})
    config.eval = ml_collections.ConfigDict({"ks": (1, 5, 10, 20), "max_history": 50,
                                             "cold_start": True})
    config.models = ml_collections.ConfigDict({"sasrec": sasrec.config_entry(
        {"dropout": 0.2, "attention_dropout": 0.2}, batch_size=128, num_epochs=20,
        bucket_lengths=(8, 16, 32, 51))})
    return config

