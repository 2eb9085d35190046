"""Semantic IDs for the embedded synthetic store (offline; seconds on a laptop CPU).

    jaxrec sid --config configs/sid_synthetic.py --workdir runs/sid_synthetic
"""

import ml_collections

from jaxrec.sid.build import sid_config


def get_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.data = ml_collections.ConfigDict({"source": "synthetic", "path": "", "on_short": "drop",
                                             "train_fraction": 1.0,
                                             "options": {"num_users": 3000, "num_items": 1200, "seed": 0}})
    # 1,200 items: 3 x 64 codes keep level-1 clusters populated (256 codes would average under 5 items each).
    config.sid = sid_config(quantizer={"codebook_size": 64})
    return config
