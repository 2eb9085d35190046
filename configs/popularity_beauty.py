"""Popularity on Amazon Beauty 2014 (P5 files). The data folder is configuration: --config.data.path=..."""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.data = ml_collections.ConfigDict({"source": "p5", "path": "../shared/data/amazon-beauty-2014",
                                             "on_short": "error", "train_fraction": 1.0,
                                             "options": {}})
    config.eval = ml_collections.ConfigDict({"ks": (1, 5, 10, 20), "max_history": 50,
                                             "cold_start": True})
    config.models = ml_collections.ConfigDict({"popularity": {"family": "popularity", "exclude_history": False}})
    return config
