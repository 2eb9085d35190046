"""Quantizer capacity (Liu et al. 2025): RQ-KMeans levels x codebook size for the Semantic IDs, the 13M TIGER over
each, on Amazon Beauty 2014.

    jaxrec sweep --sweep experiments/quantizer.py --workdir runs/sweeps/quantizer [--sweep.method=rq_vae] \
        [--sweep.seeds="(0, 1)"]

Points: levels 2, 3, 4 x codebook sizes 64, 128, 256, 512 (each plus the collision digit). The embeddings are the
base config's (MiniLM on title + categories); every point builds its own SID stage under `<point>/sid` (the
quantizer differs, so no table is shared), recording the quantizer's parameter count (N_QT).
"""

from jaxrec.sweep import Sweep, grid


def get_sweep(levels: tuple = (2, 3, 4), codebook_sizes: tuple = (64, 128, 256, 512), method: str = "rq_kmeans",
              seeds: tuple = (0,)) -> Sweep:
    return Sweep(name="quantizer", base="configs/tiger_beauty.py", seeds=seeds,
                 points=grid(**{"sid.quantizer.levels": list(levels),
                                "sid.quantizer.codebook_size": list(codebook_sizes)}),
                 common={"sid.quantizer.method": method},
                 description="SID quantizer levels x codebook size, 13M TIGER, Beauty")
