"""Semantic IDs for Amazon Beauty 2014: MiniLM on title + categories, RQ-KMeans 3 x 256 + collision digit.

    jaxrec sid --config configs/sid_beauty.py --workdir runs/sid_beauty [--config.data.path=/path/to/amazon-beauty-2014]

Quantizer variants: --config.sid.quantizer.method=rq_vae (or residual_vq), --config.sid.quantizer.levels=4,
--config.sid.quantizer.codebook_size=128, --config.sid.quantizer.balanced=True, ...
"""

import ml_collections

from jaxrec.sid.build import sid_config


def get_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.data = ml_collections.ConfigDict({"source": "p5", "path": "../shared/data/amazon-beauty-2014",
                                             "on_short": "error", "train_fraction": 1.0,
                                             "options": {}})
    # Beauty's P5 files carry title and categories for every item (no brand, price or description).
    # Nearest-centroid RQ-KMeans leaves about 22% of Beauty's items sharing all three codes with another item
    # (variants such as shades of one nail polish); the distinct last level gives them different third codes
    # where their group allows, so the collision digit is rarely needed (benchmarks/results/sid_beauty.json).
    config.sid = sid_config(template=("{title}", "Categories: {categories}"),
                            quantizer={"distinct_last_level": True})
    return config
