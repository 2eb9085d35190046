"""SID recommender size (Liu et al. 2025, Table 2): TIGER at the paper's ten sizes on Amazon Beauty 2014.

    jaxrec sid --config configs/sid_beauty.py --workdir runs/sid_beauty      # once: the SID table all points share
    jaxrec sweep --sweep experiments/tiger_size.py --workdir runs/sweeps/tiger_size \
        --config.sid.table=runs/sid_beauty/sid_table.npz [--sweep.seeds="(0, 1, 2)"] [--sweep.sizes=336K,13M]

Sizes (`tiger.TABLE2_SIZES`, layers per stack / d_model / heads / d_kv / d_ff): 1/64/3/64/512 (336K),
2/64/3/64/512 (778K), 5/64 (1.9M), 9/64 (3.3M), 3/128/6/64/1024 (6.7M), 4/128 (13M), 7/128 (21M),
8/192/9/64/1536 (43M), 9/320/15/64/2560 (88M), 20/384/18/64/3072 (192M). The feed-forward is the base config's
(GRID: ReLU, two hidden layers), whose 4 x 128 row is the paper's 13.1M model; add
`--config.models.tiger.model.feed_forward_proj=gated-gelu --config.models.tiger.model.mlp_layers=1` for the
convention closest to Table 2's counts (`tiger.TABLE2_CONVENTION`). The results table records the exact counts.
Without `sid.table` every point builds its own SID stage (identical, minutes each). Beyond the paper: seeds.
"""

from jaxrec.models.tiger import TABLE2_SIZES, table2_size
from jaxrec.sweep import Sweep, labelled


def get_sweep(seeds: tuple = (0,), sizes: str = "") -> Sweep:
    chosen = [table2_size(label) for label in sizes.split(",")] if sizes else TABLE2_SIZES
    return Sweep(name="tiger_size", base="configs/tiger_beauty.py", seeds=seeds,
                 points=labelled({size.label: size.model_fields() for size in chosen}, prefix="models.tiger.model."),
                 description="TIGER at Table 2's ten sizes on Beauty (Liu et al. 2025)")
