"""The one model-agnostic trainer: pure jitted train step on a mesh, validation, early stopping, checkpoints.

A model family plugs in through `ModelFamily`: how to create the NNX module, its loss, its `recommend`, and the
training columns it reads from the split. The trainer owns everything else:

    train_step(state, batch) -> (state, metrics)      # pure; jax.jit with in/out shardings and state donation

`TrainState` holds (step, params, opt_state, rng, nonfinite). Dropout keys are `fold_in(rng, step)`, so a resumed
run draws exactly the keys an uninterrupted one would. The grain iterator's state is saved with each checkpoint,
so resumed data order is exact as well.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec
from tqdm.auto import tqdm

from jaxrec.data.pipeline import example_batches
from jaxrec.data.splits import LeaveOneOut
from jaxrec.eval.evaluator import evaluate
from jaxrec.train.checkpoint import Checkpointer
from jaxrec.train.mesh import (DEFAULT_RULES, batch_sharding, data_parallel_size, make_mesh, shard_batch,
                               sharding_context)
from jaxrec.train.optim import make_optimizer
from jaxrec.train.writers import MetricWriter

logger = logging.getLogger(__name__)

Batch = dict[str, jax.Array]


class TrainingDiverged(RuntimeError):
    """The loss became NaN or Inf; the last good checkpoint is kept."""


@dataclasses.dataclass(frozen=True)
class ModelFamily:
    """What a model provides to the trainer."""

    name: str
    create: Callable[[nnx.Rngs], nnx.Module]
    # loss(model, batch, rng) -> (mean loss, aux); aux["weight"] = number of terms in the mean (for accumulation)
    loss: Callable[[nnx.Module, Batch, jax.Array], tuple[jax.Array, dict[str, jax.Array]]]
    recommend: Callable[[nnx.Module, jax.Array, int], jax.Array]
    training_columns: Callable[[LeaveOneOut], dict[str, np.ndarray]]
    padded_columns: tuple[str, ...] = ()
    history_length: int = 50  # histories handed to recommend at evaluation
    # The parameters trained (an nnx filter); the rest are frozen: no gradients, no optimizer state, not in the
    # checkpoints (they are recreated by `create`). LoRA families pass `jaxrec.nn.lora.LoRAParam`.
    trainable: Any = nnx.Param
    # Pretrained weights, loaded outside jit (straight into sharded arrays): () -> an nnx.State whose paths are the
    # model's; they replace the created values (e.g. a Hugging Face checkpoint under LoRA adapters).
    pretrained: Callable[[], nnx.State] | None = None
    # Several items behind one output (LLM-as-RS: items sharing a title): [num_items + 1] group id per item id; the
    # evaluator adds `<item_group_name>_recall@K` / `_ndcg@K`, where any item of a recommended group is a hit.
    item_groups: np.ndarray | None = None
    item_group_name: str = "group"
    # The model's item embeddings [num_items + 1, D] (row 0: padding), for later models of a run to read (LLM-as-RS
    # collaborative-filtering injection); computed once from the best parameters, outside the training loop.
    item_embeddings: Callable[[nnx.Module], jax.Array] | None = None


@flax.struct.dataclass
class TrainState:
    step: jax.Array
    params: nnx.State
    opt_state: optax.OptState
    rng: jax.Array  # raw key data (uint32), so orbax can save it
    nonfinite: jax.Array  # True once any step since the start saw a NaN/Inf loss


@dataclasses.dataclass
class FitResult:
    best_step: int
    best_metric: float
    validation: dict[str, float]
    test: dict[str, float]
    steps: int
    train_seconds: float  # the training loop over every attempt (resumptions included), validation included
    eval_seconds: float  # periodic validation inside the loop
    stopped_early: bool
    history: list[dict[str, float]]
    out_of_time: bool = False  # stopped by `max_train_seconds` before `num_epochs`/`num_steps`


class Trainer:
    def __init__(self, family: ModelFamily, config: ml_collections.ConfigDict, workdir: str | Path,
                 mesh: jax.sharding.Mesh | None = None):
        self.family, self.config, self.workdir = family, config, Path(workdir)
        self.mesh = mesh or make_mesh(config.get("mesh", ml_collections.ConfigDict()).to_dict() or None)
        if config.batch_size % data_parallel_size(self.mesh):
            raise ValueError(f"batch_size {config.batch_size} is not divisible by the data-parallel size "
                             f"{data_parallel_size(self.mesh)} of mesh {dict(self.mesh.shape)}")
        self._stop_signal: int | None = None  # SIGTERM or SIGINT received during `fit`

    # ------------------------------------------------------------------------------------------------ state
    def init_state(self, total_steps: int) -> TrainState:
        """Parameters and optimizer state created directly sharded (inside jit, under the mesh)."""
        self.tx, self.schedule = make_optimizer(self.config.optimizer, total_steps)
        seed = self.config.seed

        def create() -> tuple[TrainState, nnx.State]:
            model = self.family.create(nnx.Rngs(params=seed))
            graphdef, params, frozen = nnx.split(model, self.family.trainable, ...)
            self._graphdef = graphdef
            return TrainState(jnp.zeros((), jnp.int32), params, self.tx.init(params),
                              jax.random.key_data(jax.random.key(seed + 1)), jnp.zeros((), bool)), frozen

        with sharding_context(self.mesh, self.config.get("rules", None) or DEFAULT_RULES):
            abstract = nnx.eval_shape(create)
            shardings = jax.tree.map(_sharding_of(self.mesh), abstract)
            if self.family.pretrained is None:
                state, self.frozen = jax.jit(create, out_shardings=shardings)()
            else:
                state, self.frozen = self._create_around(create, abstract, shardings)
        self.state_shardings = jax.tree.map(lambda x: x.sharding, state)
        self._compile_steps()
        return state

    def _create_around(self, create: Callable, abstract: tuple, shardings: tuple) -> tuple[TrainState, nnx.State]:
        """(state, frozen) with the pretrained weights at their paths and only the rest created: the compiled
        `create` returns the other values alone, so XLA never computes (nor allocates) random values that the
        checkpoint would replace; a 0.6B+ model costs no second copy. The optimizer state is initialised last,
        from the assembled parameters."""
        loaded = dict(nnx.to_flat_state(self.family.pretrained()))
        abstract_state, abstract_frozen = abstract
        trees = {"params": abstract_state.params, "frozen": abstract_frozen}
        key = lambda tree, path: "/".join((tree, *map(str, path)))  # noqa: E731  (string keys: a sortable pytree)
        missing = {key(tree, path) for tree, state in trees.items() for path, _ in nnx.to_flat_state(state)
                   if path not in loaded}

        def fresh():
            state, frozen = create()
            values = {key(tree, path): variable.get_value()
                      for tree, part in (("params", state.params), ("frozen", frozen))
                      for path, variable in nnx.to_flat_state(part) if key(tree, path) in missing}
            return values, state.rng
        abstract_values, _ = jax.eval_shape(fresh)
        value_shardings = {name: _sharding_of(self.mesh)(value) for name, value in abstract_values.items()}
        values, rng = jax.jit(fresh, out_shardings=(value_shardings, shardings[0].rng))()

        def assemble(tree: str, target: nnx.State) -> nnx.State:
            flat = []
            for path, variable in nnx.to_flat_state(target):
                if key(tree, path) in values:
                    value = values[key(tree, path)]
                else:
                    current, value = variable.get_value(), loaded[path].get_value()
                    if value.shape != current.shape:
                        raise ValueError(f"pretrained {'.'.join(map(str, path))} has shape {value.shape}, the "
                                         f"model {current.shape}")
                    value = jax.device_put(value.astype(current.dtype), _sharding_of(self.mesh)(current))
                flat.append((path, variable.replace(value)))
            return nnx.from_flat_state(flat)

        params, frozen = assemble("params", abstract_state.params), assemble("frozen", abstract_frozen)
        opt_state = jax.jit(self.tx.init, out_shardings=shardings[0].opt_state)(params)
        step = jax.device_put(jnp.zeros((), jnp.int32), shardings[0].step)
        nonfinite = jax.device_put(jnp.zeros((), bool), shardings[0].nonfinite)
        return TrainState(step, params, opt_state, rng, nonfinite), frozen

    def _compile_steps(self) -> None:
        graphdef, family, tx, accumulation = self._graphdef, self.family, self.tx, self.config.get("grad_accum", 1)
        compute_dtype = jnp.dtype(self.config.get("compute_dtype", "float32"))

        def loss_of(params, frozen, batch, rng):
            if compute_dtype != jnp.float32:
                params, frozen = jax.tree.map(
                    lambda p: p.astype(compute_dtype) if p.dtype == jnp.float32 else p, (params, frozen))
            return family.loss(nnx.merge(graphdef, params, frozen), batch, rng)

        grad_fn = jax.value_and_grad(loss_of, has_aux=True)  # gradients of the trainable parameters only

        def train_step(state: TrainState, batch: Batch, frozen: nnx.State
                       ) -> tuple[TrainState, dict[str, jax.Array]]:
            rng = jax.random.fold_in(jax.random.wrap_key_data(state.rng), state.step)
            if accumulation == 1:
                (loss, aux), grads = grad_fn(state.params, frozen, batch, rng)
            else:
                # Micro-batches are weighted by their number of loss terms (aux["weight"], default 1), so the
                # accumulated gradient equals the full batch's even when micro-batches hold different counts.
                micro = jax.tree.map(lambda x: x.reshape(accumulation, -1, *x.shape[1:]), batch)

                def body(carry, xs):
                    index, micro_batch = xs
                    (loss, aux), grads = grad_fn(state.params, frozen, micro_batch, jax.random.fold_in(rng, index))
                    weight = aux.get("weight", jnp.ones((), jnp.float32))
                    weighted = (loss * weight, jax.tree.map(lambda g: g * weight, grads), weight)
                    return jax.tree.map(jnp.add, carry, weighted), None

                zero = (jnp.zeros((), jnp.float32), jax.tree.map(jnp.zeros_like, state.params),
                        jnp.zeros((), jnp.float32))
                (loss, grads, total), _ = jax.lax.scan(body, zero, (jnp.arange(accumulation), micro))
                total = jnp.maximum(total, 1e-9)
                loss, grads = loss / total, jax.tree.map(lambda g: g / total, grads)
            grads = jax.tree.map(lambda g, p: g.astype(p.dtype), grads, state.params)
            updates, opt_state = tx.update(grads, state.opt_state, state.params)
            params = optax.apply_updates(state.params, updates)
            metrics = {"loss": loss, "grad_norm": optax.tree.norm(grads), "param_norm": optax.tree.norm(params)}
            nonfinite = state.nonfinite | ~jnp.isfinite(loss)
            return TrainState(state.step + 1, params, opt_state, state.rng, nonfinite), metrics

        replicated = NamedSharding(self.mesh, PartitionSpec())
        frozen_shardings = jax.tree.map(lambda x: x.sharding, self.frozen)
        # The frozen parameters are arguments (never constants of the compiled programs), bound here.
        step = jax.jit(train_step, in_shardings=(self.state_shardings, None, frozen_shardings),
                       out_shardings=(self.state_shardings, replicated), donate_argnums=(0,))
        self.train_step = lambda state, batch: step(state, batch, self.frozen)
        recommend = jax.jit(lambda params, frozen, histories, k: family.recommend(
            nnx.merge(graphdef, params, frozen), histories, k), static_argnums=(3,), out_shardings=replicated)
        self._recommend = lambda params, histories, k: recommend(params, self.frozen, histories, k)

    def recommender(self, params: nnx.State) -> _Recommender:
        return _Recommender(self, params)

    def restore_best(self) -> nnx.State:
        """Parameters of the best checkpoint of the run in `workdir` (finished or interrupted), without training."""
        directory = self.workdir / "checkpoints"
        checkpointer = Checkpointer(directory, async_save=False)
        latest = checkpointer.latest_step()
        if latest is None:
            raise FileNotFoundError(f"no checkpoints under {directory}: train this model first (jaxrec run)")
        state = self.init_state(1)
        _, _, meta = checkpointer.restore(latest, state)
        best = meta["best_step"] if meta.get("best_step", -1) >= 0 else latest
        best_state, _, _ = checkpointer.restore(best, state)
        checkpointer.close()
        return best_state.params

    # ------------------------------------------------------------------------------------------------ fit
    def fit(self, split: LeaveOneOut, final_evaluation: bool = True) -> FitResult:
        """Train with periodic validation and early stopping, then (with `final_evaluation`) evaluate the best
        checkpoint on validation and test; a caller that evaluates itself (the run pipeline) passes False.

        `max_train_seconds` > 0 is a wall-clock budget for the loop: when it is spent, the step in hand is
        validated and saved, and training stops as if the schedule had ended (the learning-rate schedule is still
        the one of `num_epochs`/`num_steps`, so size those to the budget). The budget spans resumptions (the time
        spent is checkpointed), and a resumed run that had stopped early or run out of time trains no further."""
        config = self.config
        columns = self.family.training_columns(split)
        local_batch = config.batch_size // jax.process_count()
        batches = example_batches(columns, batch_size=local_batch, seed=config.seed, num_epochs=None,
                                  padded=self.family.padded_columns,
                                  bucket_lengths=tuple(config.get("bucket_lengths", ()) or ()) or None)
        steps_per_epoch = batches.batches_per_epoch
        total_steps = config.get("num_steps", 0) or steps_per_epoch * config.num_epochs
        eval_every = config.get("eval_every_steps", 0) or steps_per_epoch
        state = self.init_state(total_steps)
        stopping = config.early_stopping
        checkpointer = Checkpointer(self.workdir / "checkpoints", keep_last=config.get("keep_checkpoints", 2),
                                    best_metric=f"validation/{stopping.metric}",
                                    async_save=config.get("async_checkpointing", True))
        writer = MetricWriter(self.workdir, tensorboard=config.get("tensorboard", True))
        iterator = iter(batches)
        # train_seconds: the loop's time over every attempt (the budget spans resumptions); stopped: "early" or
        # "out_of_time" once the loop has ended that way, so a resumed finished run does not train on.
        meta = {"best_step": -1, "best_metric": -math.inf, "bad_evals": 0, "history": [], "train_seconds": 0.0,
                "stopped": ""}
        if checkpointer.latest_step() is not None:
            step = checkpointer.latest_step()
            state, data_state, meta = checkpointer.restore(step, state)
            iterator.set_state(data_state)
            logger.info("resumed from step %d (best so far: step %d, %s=%.4f)", step, meta["best_step"],
                        stopping.metric, meta["best_metric"])
        step = int(state.step)
        spent = float(meta.get("train_seconds", 0.0))  # by earlier attempts
        # SIGTERM (schedulers, the sweep launcher) and SIGINT (Ctrl-C) save the step in hand and exit.
        previous_handlers = ({number: signal.signal(number, self._on_stop_signal) for number in _STOP_SIGNALS}
                             if _main_thread() else {})
        started = time.perf_counter()

        def loop_seconds() -> float:  # the training loop's time over every attempt so far
            return spent + time.perf_counter() - started

        eval_seconds = 0.0
        stopped_early, out_of_time = meta.get("stopped") == "early", meta.get("stopped") == "out_of_time"
        budget = float(config.get("max_train_seconds", 0) or 0)
        progress = tqdm(total=total_steps, initial=step, desc=f"train {self.family.name}", unit="step",
                        disable=not config.get("progress", True) or jax.process_index() != 0, dynamic_ncols=True)
        window = _ThroughputWindow(self.family.padded_columns[0] if self.family.padded_columns else None)
        validation_users = _validation_sample(split, int(config.get("eval_max_users", 0) or 0), config.seed)
        try:
            while step < total_steps and not (stopped_early or out_of_time):
                batch = next(iterator)
                window.add(batch)
                state, metrics = self.train_step(state, shard_batch(batch, self.mesh))
                step += 1
                progress.update(1)
                if step % config.get("log_every_steps", 50) == 0 or step == total_steps:
                    self._check_finite(state, step, checkpointer)
                    logged = {f"train/{k}": float(v) for k, v in metrics.items()}
                    # The update just applied used the schedule at the optimizer's count before it: step - 1.
                    logged.update(window.rates(), **{"train/learning_rate": float(self.schedule(step - 1))})
                    writer.write(step, logged)
                    progress.set_postfix(loss=f"{logged['train/loss']:.4f}",
                                         ex_s=f"{logged['train/examples_per_s']:.0f}",
                                         tok_s=f"{logged['train/tokens_per_s']:.0f}")
                if budget and step % config.get("log_every_steps", 50) == 0:
                    out_of_time = _agreed(loop_seconds() >= budget)
                if step % eval_every == 0 or step == total_steps or out_of_time:
                    self._check_finite(state, step, checkpointer)
                    eval_started = time.perf_counter()
                    result = evaluate(self.recommender(state.params), split, "validation",
                                      max_history=self.family.history_length, ks=tuple(config.eval_ks),
                                      users=validation_users)
                    value = result[stopping.metric]
                    eval_seconds += time.perf_counter() - eval_started
                    writer.write(step, {f"validation/{k}": v for k, v in result.items()})
                    meta["history"].append({"step": step, **{f"validation/{k}": v for k, v in result.items()}})
                    improved = value > meta["best_metric"]  # a tie keeps the earlier step
                    if improved:
                        meta.update(best_step=step, best_metric=value, bad_evals=0)
                    else:
                        meta["bad_evals"] += 1
                    logger.info("step %d: validation %s=%.4f (best %.4f at step %d)", step, stopping.metric, value,
                                meta["best_metric"], meta["best_step"])
                    meta["stopped"] = ("early" if meta["bad_evals"] >= stopping.patience else
                                       "out_of_time" if out_of_time else "")
                    meta["train_seconds"] = loop_seconds()
                    # Only a new best carries the metric, so the checkpointer's best is the trainer's best (orbax
                    # would keep the latest of tied checkpoints and could delete `best_step`).
                    checkpointer.save(step, state, data=iterator.get_state(), meta=meta,
                                      metrics={f"validation/{stopping.metric}": value} if improved else None)
                    if meta["bad_evals"] >= stopping.patience:
                        stopped_early = True
                        logger.info("early stopping: no improvement in %d evaluations", stopping.patience)
                        break
                    if out_of_time:
                        logger.info("max_train_seconds=%.0f spent at step %d of %d: stopping", budget, step,
                                    total_steps)
                        break
                elif config.get("checkpoint_every_steps", 0) and step % config.checkpoint_every_steps == 0:
                    self._check_finite(state, step, checkpointer)
                    meta["train_seconds"] = loop_seconds()
                    checkpointer.save(step, state, data=iterator.get_state(), meta=meta)
                if self._stop_signal is not None:
                    self._check_finite(state, step, checkpointer)
                    meta["train_seconds"] = loop_seconds()
                    if checkpointer.latest_step() != step:  # the eval/periodic save above may have saved it already
                        checkpointer.save(step, state, data=iterator.get_state(), meta=meta)
                    checkpointer.close()
                    name = signal.Signals(self._stop_signal).name
                    logger.info("%s: saved step %d, exiting; the same command resumes from it", name, step)
                    raise SystemExit(128 + self._stop_signal)
        finally:
            progress.close()
            for number, handler in previous_handlers.items():
                signal.signal(number, handler)
        train_seconds = loop_seconds()
        checkpointer.wait()
        best_state, _, _ = checkpointer.restore(meta["best_step"], state)
        checkpointer.close()
        self.best_params = best_state.params
        validation: dict[str, float] = {}
        test: dict[str, float] = {}
        if final_evaluation:
            recommender = self.recommender(best_state.params)
            kw = dict(max_history=self.family.history_length, ks=tuple(config.eval_ks))
            validation = evaluate(recommender, split, "validation", **kw)
            test = evaluate(recommender, split, "test", **kw)
            writer.write(meta["best_step"], {f"test/{k}": v for k, v in test.items()})
        writer.close()
        return FitResult(meta["best_step"], meta["best_metric"], validation, test, step, train_seconds,
                         eval_seconds, stopped_early, meta["history"], out_of_time)

    def _check_finite(self, state: TrainState, step: int, checkpointer: Checkpointer) -> None:
        if bool(state.nonfinite):
            checkpointer.close()
            raise TrainingDiverged(f"loss became NaN/Inf at or before step {step}; stopped without saving this "
                                   f"state. Last good checkpoint: step {checkpointer.latest_step()} in "
                                   f"{self.workdir / 'checkpoints'}. Lower the learning rate or enable clipping "
                                   "(optimizer.clip_norm).")

    def _on_stop_signal(self, signum, frame) -> None:
        """First SIGTERM/SIGINT: stop after the current step, saving it. A second Ctrl-C aborts at once."""
        if signum == signal.SIGINT and self._stop_signal is not None:
            raise KeyboardInterrupt
        self._stop_signal = signum
        if signum == signal.SIGINT:
            logger.warning("Ctrl-C: saving after the current step and exiting (Ctrl-C again aborts without saving)")


class _Recommender:
    """The common evaluator's view of a trained model.

    Users are grouped by history length and each group's histories are trimmed to the smallest length bucket that
    holds them: left padding is masked and positions are right-aligned, so trimming changes no score, and short
    histories (most of them) stop paying for the longest. Rows are padded to a power of two (at most
    `eval_batch_size`) so only a few shapes compile.
    """

    def __init__(self, trainer: Trainer, params: nnx.State):
        self.name, self.trainer, self.params = trainer.family.name, trainer, params
        self.item_groups, self.item_group_name = trainer.family.item_groups, trainer.family.item_group_name

    def item_embeddings(self) -> np.ndarray | None:
        """The family's item embeddings from these parameters as a host array, or None when it has none."""
        function = self.trainer.family.item_embeddings
        if function is None:
            return None
        model = nnx.merge(self.trainer._graphdef, self.params, self.trainer.frozen)
        return np.asarray(jax.device_get(function(model)))

    def recommend(self, histories: np.ndarray, k: int) -> np.ndarray:
        histories = np.asarray(histories, dtype=np.int32)
        width = histories.shape[1]
        buckets = sorted({min(b, width) for b in (*(self.trainer.config.get("bucket_lengths", ()) or ()), width)})
        lengths = np.count_nonzero(histories, axis=1)
        bucket_of = np.searchsorted(np.asarray(buckets), lengths)
        result = np.empty((len(histories), k), dtype=np.int32)
        chunk = self.trainer.config.eval_batch_size
        for bucket, length in enumerate(buckets):
            users = np.flatnonzero(bucket_of == bucket)
            for start in range(0, len(users), chunk):
                rows = users[start:start + chunk]
                result[rows] = self._run(histories[rows, width - length:], k)
        return result

    def _run(self, histories: np.ndarray, k: int) -> np.ndarray:
        multiple = data_parallel_size(self.trainer.mesh)
        power_of_two = max(64, 1 << (len(histories) - 1).bit_length())
        rows = max(min(power_of_two, self.trainer.config.eval_batch_size), len(histories))
        rows = -(-rows // multiple) * multiple
        padded = np.zeros((rows, histories.shape[1]), np.int32)
        padded[:len(histories)] = histories
        placed = jax.device_put(padded, batch_sharding(self.trainer.mesh, 2))
        return np.asarray(self.trainer._recommend(self.params, placed, k))[:len(histories)]


class _ThroughputWindow:
    """Examples/s and tokens/s since the last report: the tokens are the non-zero entries of one column (a family's
    first padded column: the history items of SASRec / TIGER rows, the attention mask of LLM rows), never a sum
    over several columns that describe the same positions."""

    def __init__(self, token_column: str | None):
        self.token_column = token_column
        self.start, self.examples, self.tokens = time.perf_counter(), 0, 0

    def add(self, batch: dict[str, np.ndarray]) -> None:
        first = next(iter(batch.values()))
        self.examples += len(first)
        if self.token_column is not None:
            self.tokens += int(np.count_nonzero(batch[self.token_column]))

    def rates(self) -> dict[str, float]:
        elapsed = max(time.perf_counter() - self.start, 1e-9)
        rates = {"train/examples_per_s": self.examples / elapsed, "train/tokens_per_s": self.tokens / elapsed}
        self.start, self.examples, self.tokens = time.perf_counter(), 0, 0
        return rates


def _sharding_of(mesh):
    def sharding(x):
        spec = getattr(x, "sharding", None)
        if isinstance(spec, NamedSharding):  # abstract values carry an abstract mesh: rebind it to the real one
            return NamedSharding(mesh, spec.spec)
        return NamedSharding(mesh, PartitionSpec())
    return sharding


def _validation_sample(split: LeaveOneOut, max_users: int, seed: int) -> np.ndarray | None:
    """A fixed sample of `max_users` validation users (sorted; the same every evaluation and on every process), or
    None (everyone) when `max_users` is 0 or covers them all."""
    total = len(split.targets("validation"))
    if max_users <= 0 or max_users >= total:
        return None
    return np.sort(np.random.default_rng(seed).choice(total, max_users, replace=False))


def _agreed(flag: bool) -> bool:
    """`flag` as process 0 sees it, on every process (so all processes stop at the same step)."""
    if jax.process_count() == 1:
        return flag
    from jax.experimental import multihost_utils

    return bool(multihost_utils.broadcast_one_to_all(np.asarray(flag)))


_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()
