"""Data scaling (beyond the paper): the 13M TIGER trained on nested fractions of Beauty's users (10%, 25%, 50%,
100%), several seeds each; evaluation always covers every user.

    jaxrec sid --config configs/sid_beauty.py --workdir runs/sid_beauty      # once: the SID table all points share
    jaxrec sweep --sweep experiments/data_scaling.py --workdir runs/sweeps/data_scaling \
        --config.sid.table=runs/sid_beauty/sid_table.npz [--sweep.size=3.3M] [--sweep.seeds="(0, 1, 2)"]

`data.train_fraction` keeps the training parts of round(fraction x users) users chosen by a fixed permutation, so
each fraction's users include the smaller fractions' and every model and seed sees the same subset
(`LeaveOneOut.with_train_fraction`). `size` is a Table 2 label (`tiger.TABLE2_SIZES`; default 13M, the base).
"""

from jaxrec.models.tiger import table2_size
from jaxrec.sweep import Sweep, grid


def get_sweep(fractions: tuple = (0.1, 0.25, 0.5, 1.0), seeds: tuple = (0, 1, 2), size: str = "13M") -> Sweep:
    model = {f"models.tiger.model.{key}": value for key, value in table2_size(size).model_fields().items()}
    return Sweep(name="data_scaling", base="configs/tiger_beauty.py", seeds=seeds, common=model,
                 points=grid(**{"data.train_fraction": [float(f) for f in fractions]}),
                 description=f"TIGER {size} on nested fractions of Beauty's training users")
