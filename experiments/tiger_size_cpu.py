"""The SID-size sweep reduced to a 2-core CPU: TIGER at Table 2's four smallest sizes (336K, 778K, 1.9M, 3.3M) x two
seeds on Amazon Beauty 2014, each point with a fixed wall-clock training budget.

    jaxrec sid --config configs/sid_beauty.py --workdir runs/sid_beauty      # once, about 2 minutes
    jaxrec sweep --sweep experiments/tiger_size_cpu.py --workdir runs/sweeps/tiger_size_cpu \
        --config.sid.table=runs/sid_beauty/sid_table.npz
    jaxrec report ...                                                         # the fits over results.jsonl

The data folder is the base config's (`../shared/data/amazon-beauty-2014`; `--config.data.path=...` moves it).
Per point: `max_train_seconds` (`--sweep.budget=...`, default 300 s) bounds the training loop, compilation and
validation included (checked every 10 steps); the learning-rate schedule is sized to it (`--sweep.epochs`, warm-up
200 steps) and validation runs every `--sweep.eval_every` steps on a fixed sample of `--sweep.eval_users` (2,000)
validation users. The final evaluation (beam search over all 22,363 test users) comes on top and dominates on a
CPU, so this sweep scores the test split only (`eval.stages`), with K in (1, 5, 10) and 10 beams (the base: K up
to 20, 20 beams). The feed-forward is `tiger.TABLE2_CONVENTION` (gated-GELU, one hidden
layer): the convention closest to Table 2's counts, and half the feed-forward cost of the base config's GRID recipe.
Timings land in the results table (`seconds`: fit, validation, test, wall). Without `sid.table` every point
builds the same SID stage itself.
"""

from jaxrec.models.tiger import TABLE2_CONVENTION, TABLE2_SIZES
from jaxrec.sweep import Sweep, labelled


def get_sweep(seeds: tuple = (0, 1), budget: float = 300.0, epochs: int = 1, eval_every: int = 500,
              eval_users: int = 2000) -> Sweep:
    train, model = "models.tiger.train.", "models.tiger.model."
    smallest = {size.label: size.model_fields() for size in TABLE2_SIZES[:4]}  # 336K, 778K, 1.9M, 3.3M
    return Sweep(name="tiger_size_cpu", base="configs/tiger_beauty.py", seeds=seeds,
                 points=labelled(smallest, prefix="models.tiger.model."),
                 common={train + "max_train_seconds": float(budget), train + "num_epochs": int(epochs),
                         train + "optimizer.warmup_steps": 200, train + "eval_every_steps": int(eval_every),
                         train + "log_every_steps": 10,  # the budget is checked at log steps (seconds apart here)
                         train + "progress": False, "sid.progress": False,
                         train + "eval_ks": (1, 5, 10), "eval.ks": (1, 5, 10), model + "beam_width": 10,
                         train + "eval_max_users": int(eval_users), "eval.stages": ("test",),
                         **{model + key: value for key, value in TABLE2_CONVENTION.items()}},
                 description="Table 2's four smallest TIGER sizes x 2 seeds on Beauty, CPU budget per point")
