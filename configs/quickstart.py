"""The README's main job: every model family on the embedded synthetic store (offline, about a minute on 2 cores)."""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.data = ml_collections.ConfigDict({
        "source": "synthetic",
        "path": "",
        "on_short": "drop",
        # SyntheticConfig fields; see jaxrec/data/synthetic.py.
        "options": {"num_users": 3000, "num_items": 1200, "seed": 0},
    })
    config.eval = ml_collections.ConfigDict({"ks": (1, 5, 10, 20), "max_history": 50, "batch_size": 1024,
                                             "cold_start": True})
    config.models = ml_collections.ConfigDict({
        "popularity": {"family": "popularity", "exclude_history": False},
    })
    return config
