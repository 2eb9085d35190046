"""Text-encoder size (Liu et al. 2025): Semantic IDs from Flan-T5 encoders small -> XXL, the 13M TIGER over each.

    jaxrec sweep --sweep experiments/text_encoder_size.py --workdir runs/sweeps/text_encoder_size \
        --sweep.encoders=/models [--sweep.seeds="(0, 1)"] [--only flan-t5-base]

`encoders` is a folder holding Hugging Face checkpoints named flan-t5-small, flan-t5-base, flan-t5-large,
flan-t5-xl and flan-t5-xxl (the T5 encoder is loaded, mean-pooled; `jaxrec.text.encoders`). A point whose folder is
absent is reported as failed with the missing path before anything runs, and the others go on: the sweep runs where
weights exist (`--only` picks some). Every point builds its own SID stage (embeddings -> RQ-KMeans 3 x 256 -> table)
under `<point>/sid`; its `sid_diagnostics.json` records the encoder's parameter count (N_LLM of the fits) and the
quantizer's (N_QT).
"""

from jaxrec.sweep import Sweep, zip_

FLAN_T5 = ("flan-t5-small", "flan-t5-base", "flan-t5-large", "flan-t5-xl", "flan-t5-xxl")


def get_sweep(encoders: str = "../shared/models", seeds: tuple = (0,)) -> Sweep:
    root = encoders.rstrip("/")
    return Sweep(name="text_encoder_size", base="configs/tiger_beauty.py", seeds=seeds,
                 points=zip_(label=list(FLAN_T5), **{"sid.encoder": [f"{root}/{name}" for name in FLAN_T5]}),
                 requires=("sid.encoder",),
                 description="Flan-T5 small..XXL text encoders for the SIDs, 13M TIGER, Beauty")
