"""SASRec size (Liu et al. 2025, Table 3: 98K, 786K, 1.6M, 6.3M, 25M, 75M) on Amazon Beauty 2014.

    jaxrec sweep --sweep experiments/sasrec_size.py --workdir runs/sweeps/sasrec_size [--sweep.seeds="(0, 1, 2)"]

One convention for every size: two blocks, feed-forward width = hidden (SASRec's point-wise layers), heads of 64
(one below 64); the hidden size sets the count, which the item embeddings dominate. Exact counts on Beauty
(12,101 items, 50 positions), against Table 3:
    hidden    8:     98,144  (98K)      hidden  384:  6,443,520  (6.3M)
    hidden   64:    828,160  (786K)     hidden 1024: 25,047,040  (25M)
    hidden  128:  1,754,624  (1.6M)     hidden 2048: 75,259,904  (75M)
(one block gives 803,008 and 1,655,168 for the second and third rows, closer, at the cost of a second convention).
"""

from jaxrec.sweep import Sweep, labelled

TABLE3 = {"98K": 8, "786K": 64, "1.6M": 128, "6.3M": 384, "25M": 1024, "75M": 2048}  # label -> hidden


def get_sweep(seeds: tuple = (0,)) -> Sweep:
    sizes = {label: {"hidden": hidden, "ffn_hidden": hidden, "num_layers": 2, "num_heads": max(1, hidden // 64)}
             for label, hidden in TABLE3.items()}
    return Sweep(name="sasrec_size", base="configs/sasrec_beauty.py", seeds=seeds,
                 points=labelled(sizes, prefix="models.sasrec.model."),
                 description="SASRec at Table 3's six sizes on Beauty (Liu et al. 2025)")
