"""Collaborative-filtering injection on the embedded synthetic store: SASRec is trained first, then a tiny
Qwen3-shaped LLM-as-RS reads each history item's title with that SASRec's item embedding, projected to the LLM's
width, added at a slot token opening the item's line (`cf_source="sasrec"`); minutes on a laptop CPU.

    jaxrec run --config configs/llm_cf_synthetic.py --workdir runs/llm_cf_synthetic

The base of experiments/cf_injection.py. `--config.models.llm.model.cf_source=` (empty) is the no-CF control.
"""

from pathlib import Path

import ml_collections

from jaxrec.config import load_config
from jaxrec.models import sasrec


def get_config() -> ml_collections.ConfigDict:
    config = load_config(Path(__file__).with_name("llm_synthetic.py"))  # one definition of the tiny LLM-as-RS
    # Each history line gains one CF slot token; 10 lines of ~11 tokens still fit the 128-token prompt budget.
    config.models.llm.model.cf_source = "sasrec"
    config.models.sasrec = sasrec.config_entry({"hidden": 64, "dropout": 0.2, "attention_dropout": 0.2},
                                               batch_size=128, num_epochs=20, bucket_lengths=(8, 16, 32, 51))
    return config
