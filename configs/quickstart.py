"""The README's main job: every model family on the embedded synthetic store (offline, a few minutes on 2 cores):
popularity, SASRec, item text -> MiniLM -> Semantic IDs -> a small TIGER with constrained beam search, and a tiny
LLM-as-RS trained from scratch that generates titles under the title trie."""

from pathlib import Path

import ml_collections

from jaxrec.config import load_config
from jaxrec.models import sasrec
from jaxrec.sid.build import sid_config
from jaxrec.train.defaults import distributed_config


def get_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.distributed = distributed_config()
    config.data = ml_collections.ConfigDict({
        "source": "synthetic",
        "path": "",
        "on_short": "drop",
        "train_fraction": 1.0,  # training data of this share of the users (data scaling); evaluation: all
        # SyntheticConfig fields; see jaxrec/data/synthetic.py.
        "options": {"num_users": 3000, "num_items": 1200, "seed": 0},
    })
    # Semantic IDs of the catalogue (MiniLM -> RQ-KMeans 3 x 64 + collision digit): <workdir>/sid/.
    config.sid = sid_config(quantizer={"codebook_size": 64}, progress=False)
    config.eval = ml_collections.ConfigDict({"ks": (1, 5, 10, 20), "max_history": 50,
                                             "cold_start": True})
    config.models = ml_collections.ConfigDict({
        "popularity": {"family": "popularity", "exclude_history": False},
        "sasrec": sasrec.config_entry(
            {"dropout": 0.2, "attention_dropout": 0.2},
            batch_size=128, num_epochs=12, bucket_lengths=(16, 51),
            optimizer={"learning_rate": 3e-3},  # merged into the default optimizer group
            early_stopping={"metric": "ndcg@10", "patience": 3}, log_every_steps=22, progress=False),
        # A small TIGER over the SIDs above (configs/tiger_synthetic.py's model), trained for a few epochs.
        "tiger": _tiger_entry(),
        # A tiny from-scratch LLM-as-RS (configs/llm_synthetic.py's model), half an epoch.
        "llm": _llm_entry(),
    })
    return config


def _tiger_entry() -> ml_collections.ConfigDict:
    entry = load_config(Path(__file__).with_name("tiger_synthetic.py")).models.tiger
    entry.train.update({"num_epochs": 6, "progress": False})
    return entry


def _llm_entry() -> ml_collections.ConfigDict:
    entry = load_config(Path(__file__).with_name("llm_synthetic.py")).models.llm
    entry.train.update({"num_steps": 150, "progress": False})
    return entry
