"""Peer benchmark: RecBole's SASRec on CPU (train-step time and full-sort evaluation time on Beauty).

Runs under the separate bench venv (see setup_recbole_env.sh / requirements-recbole.txt), never the project venv:

    /work/bench-venv/bin/python benchmarks/peers/recbole_sasrec.py \
        --data ../shared/data/amazon-beauty-2014 --out /tmp/recbole.json \
        [--steps 30 --batch-size 256 --max-len 50 --hidden 64 --layers 2 --heads 2 --inner 256 \
         --dropout 0.5 --eval-batch-size 4096 --threads 2]

What it does
  1. Converts the P5 ``sequences.txt`` (``user item item ...``, 1-based ids, chronological) into a RecBole
     atomic file ``<tmp>/beauty/beauty.inter`` (user_id:token, item_id:token, timestamp:float), using the position
     in the sequence as the timestamp so the order is kept. RecBole is configured for leave-one-out exactly like our
     protocol: ``eval_args {split: {LS: valid_and_test}, order: TO, group_by: user, mode: full}``, no filtering,
     ``MAX_ITEM_LIST_LENGTH``, ``loss_type: CE``, ``train_neg_sample_args: None``, CPU only.
  2. Training step: batches come from RecBole's own train dataloader; 5 warm-up steps, then ``--steps`` steps are
     timed one by one (zero_grad, model.calculate_loss, backward, Adam step from RecBole's Trainer). The time to
     fetch a batch from the dataloader is measured separately and is NOT in the step time.
  3. Full-sort evaluation: ``trainer.evaluate(test_data, load_best_model=False)`` timed end to end, after one
     warm-up ``trainer.evaluate(valid_data, ...)``. The model is essentially untrained; only the time matters.

How RecBole builds SASRec training examples (read from recbole 1.2.1 source, confirmed by the counts reported):
  * ``SequentialDataset.data_augmentation`` turns every sequence i1..in into all its prefixes: (<i1>|i2),
    (<i1,i2>|i3), ..., (<i1..i(n-1)>|in), history truncated to the last MAX_ITEM_LIST_LENGTH items, BEFORE the split.
    Leave-one-out then gives each user's last example to test and second-to-last to valid; the rest train.
    So train examples = sum(n_u - 3) = interactions - 3 * users (Beauty: 198,502 - 67,089 = 131,413).
  * ``SASRec.calculate_loss`` (CE) encodes the left-aligned, right-padded history, takes the hidden state at the
    LAST real position only (``gather_indexes(output, item_seq_len - 1)``) and does a softmax CE over ALL item
    embeddings, padding row 0 included. One target per example; prefixes replace per-position losses.
  * Full-sort evaluation for sequential models scores all items, sets only column 0 (padding) to -inf; previously
    seen items are NOT masked (``history_index`` is None for sequential models).

Timing notes
  * This is a 2-core box shared with other jobs. With --threads 2, any competing process makes OpenMP threads wait
    at barriers and the step time blows up (measured 0.35 s/step at load ~2.6 vs 2.4-4.0 s/step at load ~4-5;
    --threads 1 gave 0.59 s/step at load ~4.6). The JSON records the 1-min load average and process CPU/wall during
    the timed regions (``train_cpu_per_wall`` ~= threads on an idle box); distrust runs where it is far below.
  * Full-sort eval time is dominated by the encoder over all 50 positions of 22,363 histories (RecBole's
    hand-written attention and erf-based gelu), not by scoring the 12,102 items.

Compatibility (site-packages is never edited)
  * numpy is pinned < 2 (1.26.4, with pandas 2.2.3) in the bench venv. recbole 1.2.1 still uses ``np.float`` etc.
    (e.g. NDCG/MRR in evaluator/metrics.py) and restores those aliases itself in ``Config.compatibility_settings``
    via ``np.float = np.float_``, ``np.complex_``, ``np.unicode_`` -- names numpy 2 removed, so with numpy 2 even
    ``Config(...)`` raises AttributeError. The script exits with a clear message if numpy >= 2 is found.
  * ``recbole.quick_start`` is not imported (it imports ``ray``, which we do not install); the script builds
    Config / dataset / dataloaders / model / Trainer directly, as ``run_recbole`` does.
  * RecBole's Trainer writes ``log_tensorboard/`` and checkpoints relative to the working directory, so the script
    chdirs into its temp dir before building anything; nothing is written into the repository.
  * RecBole's Config also reads ``--key=value`` options from sys.argv; sys.argv is hidden while Config is built so
    this script's own flags never leak into RecBole's config.
  * ``load_best_model=False`` means ``torch.load`` (weights_only default change in torch >= 2.6) is never reached.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

if int(np.__version__.split(".")[0]) >= 2:  # see docstring: recbole 1.2.1's own numpy shim needs numpy < 2
    sys.exit(f"numpy {np.__version__} found; recbole 1.2.1 needs numpy<2 (use requirements-recbole.txt)")

import torch  # noqa: E402

DATASET = "beauty"


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", type=Path, default=Path("../shared/data/amazon-beauty-2014"))
    p.add_argument("--out", type=Path, default=Path("/tmp/recbole.json"))
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--max-len", type=int, default=50)
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--heads", type=int, default=2)
    p.add_argument("--inner", type=int, default=256)
    p.add_argument("--dropout", type=float, default=0.5)
    p.add_argument("--eval-batch-size", type=int, default=4096)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=2020)
    return p.parse_args()


def write_atomic(sequences_txt: Path, folder: Path) -> tuple[int, int, int]:
    """P5 sequences.txt -> <folder>/beauty.inter; returns (users, distinct items, interactions)."""
    folder.mkdir(parents=True, exist_ok=True)
    users, items, n_inter = 0, set(), 0
    with sequences_txt.open() as src, (folder / f"{DATASET}.inter").open("w") as dst:
        dst.write("user_id:token\titem_id:token\ttimestamp:float\n")
        for line in src:
            parts = line.split()
            if not parts:
                continue
            user, seq = parts[0], parts[1:]
            users += 1
            for position, item in enumerate(seq):
                dst.write(f"{user}\t{item}\t{position}\n")
                items.add(item)
            n_inter += len(seq)
    return users, len(items), n_inter


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main() -> None:
    args = parse_args()
    data = args.data.resolve()
    out = args.out.resolve()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")

    import recbole
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.model.sequential_recommender import SASRec
    from recbole.trainer import Trainer
    from recbole.utils import init_seed

    logging.getLogger().setLevel(logging.WARNING)
    result: dict = {"peer": "recbole", "model": "SASRec"}
    t_total = time.perf_counter()
    load_start = os.getloadavg()

    with tempfile.TemporaryDirectory(prefix="recbole_bench_") as tmp:
        tmp = Path(tmp)
        os.chdir(tmp)  # RecBole writes log_tensorboard/ and saved/ relative to cwd
        t0 = time.perf_counter()
        p5_users, p5_items, p5_inter = write_atomic(data / "sequences.txt", tmp / DATASET)
        convert_s = time.perf_counter() - t0

        config_dict = {
            "data_path": str(tmp),
            "checkpoint_dir": str(tmp / "saved"),
            "USER_ID_FIELD": "user_id",
            "ITEM_ID_FIELD": "item_id",
            "TIME_FIELD": "timestamp",
            "load_col": {"inter": ["user_id", "item_id", "timestamp"]},
            "user_inter_num_interval": "[0,inf)",
            "item_inter_num_interval": "[0,inf)",
            "rm_dup_inter": None,
            "MAX_ITEM_LIST_LENGTH": args.max_len,
            "eval_args": {"split": {"LS": "valid_and_test"}, "order": "TO", "group_by": "user", "mode": "full"},
            "metrics": ["Recall", "NDCG"],
            "topk": [10],
            "valid_metric": "NDCG@10",
            "loss_type": "CE",
            "train_neg_sample_args": None,
            "n_layers": args.layers,
            "n_heads": args.heads,
            "hidden_size": args.hidden,
            "inner_size": args.inner,
            "hidden_dropout_prob": args.dropout,
            "attn_dropout_prob": args.dropout,
            "train_batch_size": args.batch_size,
            "eval_batch_size": args.eval_batch_size,
            "learner": "adam",
            "learning_rate": 0.001,
            "device": "cpu",
            "use_gpu": False,
            "gpu_id": "",
            "seed": args.seed,
            "reproducibility": True,
            "show_progress": False,
            "log_wandb": False,
            "save_dataset": False,
            "save_dataloaders": False,
            "state": "WARNING",
        }
        argv, sys.argv = sys.argv, sys.argv[:1]  # RecBole's Config also parses `--key=value` from sys.argv
        try:
            config = Config(model="SASRec", dataset=DATASET, config_dict=config_dict)
        finally:
            sys.argv = argv
        init_seed(config["seed"], config["reproducibility"])
        torch.set_num_threads(args.threads)  # after init_seed, in case anything reset it

        t0 = time.perf_counter()
        dataset = create_dataset(config)
        dataset_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        train_data, valid_data, test_data = data_preparation(config, dataset)
        split_s = time.perf_counter() - t0

        users = dataset.user_num - 1  # RecBole reserves id 0 for padding ([PAD])
        items = dataset.item_num - 1
        assert (users, items) == (p5_users, p5_items), (users, items, p5_users, p5_items)
        n_train = len(train_data.dataset)
        n_valid = len(valid_data.dataset)
        n_test = len(test_data.dataset)
        print(f"RecBole dataset: users={users} (+pad) items={items} (+pad) interactions={p5_inter} "
              f"-> {dataset.inter_num} augmented prefix examples "
              f"| examples train={n_train} valid={n_valid} test={n_test} "
              f"| convert {convert_s:.1f}s, dataset+augmentation {dataset_s:.1f}s, split+loaders {split_s:.1f}s",
              flush=True)

        init_seed(config["seed"] + config["local_rank"], config["reproducibility"])
        model = SASRec(config, train_data.dataset).to(config["device"])
        trainer = Trainer(config, model)
        optimizer = trainer.optimizer
        n_params = sum(p.numel() for p in model.parameters())

        # ---- training step --------------------------------------------------------------------------------------
        model.train()
        batches, fetch = [], []
        iterator = iter(train_data)
        while len(batches) < args.warmup + args.steps:
            t0 = time.perf_counter()
            try:
                batch = next(iterator)
            except StopIteration:
                iterator = iter(train_data)
                continue
            fetch.append(time.perf_counter() - t0)
            if len(batch) == args.batch_size:  # keep the shape fixed (skip a short final batch)
                batches.append(batch.to(config["device"]))
        batch_shape = list(batches[0][model.ITEM_SEQ].shape)

        def step(interaction) -> float:
            optimizer.zero_grad()
            loss = model.calculate_loss(interaction)
            loss.backward()
            optimizer.step()
            return float(loss.detach())

        losses, times = [], []
        cpu0 = wall0 = 0.0
        for i, interaction in enumerate(batches):
            if i == args.warmup:
                cpu0, wall0 = time.process_time(), time.perf_counter()
            t0 = time.perf_counter()
            loss = step(interaction)
            dt = time.perf_counter() - t0
            losses.append(loss)
            if i >= args.warmup:
                times.append(dt)
        cpu_per_wall = (time.process_time() - cpu0) / (time.perf_counter() - wall0)
        step_median = statistics.median(times)
        step_mean = statistics.fmean(times)
        print(f"train step: batch {batch_shape}, median {step_median * 1e3:.1f} ms, mean {step_mean * 1e3:.1f} ms "
              f"over {len(times)} steps, cpu/wall {cpu_per_wall:.2f} (loss {losses[0]:.3f} -> {losses[-1]:.3f}); "
              f"dataloader fetch median {statistics.median(fetch) * 1e3:.1f} ms/batch", flush=True)

        # ---- full-sort evaluation -------------------------------------------------------------------------------
        t0 = time.perf_counter()
        trainer.evaluate(valid_data, load_best_model=False, show_progress=False)
        valid_s = time.perf_counter() - t0
        cpu0, t0 = time.process_time(), time.perf_counter()
        test_result = trainer.evaluate(test_data, load_best_model=False, show_progress=False)
        eval_s = time.perf_counter() - t0
        eval_cpu_per_wall = (time.process_time() - cpu0) / eval_s
        print(f"full-sort eval over {n_test} test users: {eval_s:.2f}s (warm-up on valid: {valid_s:.2f}s); "
              f"test {dict(test_result)}", flush=True)

    result.update({
        "recbole_version": recbole.__version__,
        "torch_version": torch.__version__,
        "numpy_version": np.__version__,
        "python_version": platform.python_version(),
        "threads": torch.get_num_threads(),
        "interop_threads": torch.get_num_interop_threads(),
        "cpu": f"{cpu_name()}, {os.cpu_count()} cores",
        "users": users,
        "items": items,
        "user_num_with_pad": dataset.user_num,
        "item_num_with_pad": dataset.item_num,
        "interactions": p5_inter,
        "augmented_examples": dataset.inter_num,  # prefixes: interactions - users (see docstring)
        "train_examples": n_train,
        "valid_examples": n_valid,
        "test_examples": n_test,
        "params": n_params,
        "config": {"max_len": args.max_len, "hidden": args.hidden, "layers": args.layers, "heads": args.heads,
                   "inner": args.inner, "dropout": args.dropout, "batch_size": args.batch_size,
                   "eval_batch_size": args.eval_batch_size, "loss_type": "CE", "optimizer": "adam", "lr": 0.001},
        "batch_shape": batch_shape,
        "warmup_steps": args.warmup,
        "timed_steps": len(times),
        "train_step_median_s": step_median,
        "train_step_mean_s": step_mean,
        "train_step_min_s": min(times),
        "train_step_times_s": times,
        "dataloader_fetch_median_s": statistics.median(fetch),
        "losses_first_last": [losses[0], losses[-1]],
        "full_sort_eval_s": eval_s,
        "full_sort_eval_warmup_valid_s": valid_s,
        "eval_users": n_test,
        "test_metrics_untrained": {k: float(v) for k, v in test_result.items()},
        "prep_s": {"convert": convert_s, "dataset_and_augmentation": dataset_s, "split_and_dataloaders": split_s},
        "total_s": time.perf_counter() - t_total,
        # 1-min load average at start / end: on this 2-core box anything much above `threads` means other
        # processes competed for the cores and the timings are inflated (OpenMP threads then wait at barriers).
        "loadavg_1m_start_end": [load_start[0], os.getloadavg()[0]],
        # process CPU seconds per wall second while timing; ~threads on an idle box, well below it when contended
        "train_cpu_per_wall": cpu_per_wall,
        "eval_cpu_per_wall": eval_cpu_per_wall,
        "command": " ".join([Path(sys.executable).as_posix()] + sys.argv),
    })
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out} (total {result['total_s']:.1f}s)")


if __name__ == "__main__":
    main()
