"""The trainer: sharding-invariant training, fit end to end, divergence, gradient accumulation, exact resumption
after SIGKILL / SIGTERM, and a two-process run on localhost.

Multi-device and multi-process checks run in subprocesses (tests/_multidevice_worker.py, tests/_train_worker.py),
since the fake device count must be fixed before jax starts.
"""

from __future__ import annotations

import dataclasses
import json
import math
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from _multidevice_worker import tiny_family, tiny_model_config, tiny_split, tiny_train_config
from jaxrec.data.pipeline import example_batches
from jaxrec.models import sasrec
from jaxrec.train.mesh import shard_batch
from jaxrec.train.trainer import Trainer, TrainingDiverged
from test_mesh import multidevice_report, session_cache_dir, worker_env

TESTS = Path(__file__).resolve().parent
TRAIN_WORKER = TESTS / "_train_worker.py"


@pytest.fixture(scope="module")
def split():
    return tiny_split()


def checkpoint_steps(workdir: Path) -> list[int]:
    folder = workdir / "checkpoints"
    return sorted(int(p.name) for p in folder.iterdir() if p.is_dir() and p.name.isdigit()) if folder.is_dir() else []


def flat_params(state_params) -> dict[str, np.ndarray]:
    from flax import nnx

    return {".".join(map(str, path)): np.asarray(jax.device_get(v.get_value()))
            for path, v in nnx.to_flat_state(state_params)}


# ------------------------------------------------------------------------------------------------ 1. sharding
def test_sharded_training_matches_single_device(tmp_path_factory):
    """12 steps (fp32, dropout on) on data=8, fsdp=8, data=2/fsdp=2/tensor=2 and one device: same losses, same
    parameters. Dropout keys are fold_in(step) and the hashed keep masks depend only on the key and the shape, so
    the masks agree as well."""
    results = multidevice_report(tmp_path_factory)
    report = results["equivalence"]
    assert report["device_count"] == 8
    params = np.load(results["npz"])
    reference = np.asarray(report["single"]["losses"])
    assert report["single"]["devices"] == 1 and len(reference) == 12 and np.all(np.isfinite(reference))
    names = [n.split("/", 1)[1] for n in params.files if n.startswith("single/")]
    assert len(names) >= 17  # every parameter tensor of the tiny SASRec (fused qkv)
    for mesh in ("data8", "fsdp8", "data2_fsdp2_tensor2"):
        assert report[mesh]["devices"] == 8 and report[mesh]["step"] == 12
        np.testing.assert_allclose(report[mesh]["losses"], reference, rtol=1e-5, atol=1e-6, err_msg=mesh)
        for name in names:
            np.testing.assert_allclose(params[f"{mesh}/{name}"], params[f"single/{name}"], rtol=1e-5, atol=1e-5,
                                       err_msg=f"{mesh}: {name}")
    # Training moved the parameters (the comparison is not vacuous).
    assert reference[-1] < reference[0]


# ------------------------------------------------------------------------------------------------ 2. fit
def test_sasrec_loss_with_left_padding_is_finite_eagerly_and_jitted():
    """Padding targets score -inf (padding is never an answer); masked, not multiplied by 0 (inf * 0 = NaN). The
    padded sequence's loss is that of the sequence without its padding (positions are right-aligned)."""
    config = sasrec.SASRecConfig(num_items=10, max_length=5, hidden=8, num_heads=2, ffn_hidden=16, dropout=0.0,
                                 attention_dropout=0.0)
    model = sasrec.SASRec(config, rngs=nnx.Rngs(0))

    def loss(sequence):
        return sasrec.loss_fn(model, {"sequence": sequence}, jax.random.key(0))[0]

    unpadded = float(loss(jnp.array([[3, 4, 5, 6]])))
    padded = jnp.array([[0, 0, 3, 4, 5, 6]])
    assert math.isfinite(unpadded)
    assert float(loss(padded)) == pytest.approx(unpadded, rel=1e-6)
    assert float(jax.jit(loss)(padded)) == pytest.approx(unpadded, rel=1e-6)


def test_sasrec_bce_negatives_are_never_the_target():
    """With two items the one negative of each position is the other item: the loss is exactly that pair's."""
    config = sasrec.SASRecConfig(num_items=2, max_length=4, hidden=8, num_heads=2, ffn_hidden=16, dropout=0.0,
                                 attention_dropout=0.0, loss="bce")
    model = sasrec.SASRec(config, rngs=nnx.Rngs(0))
    sequence = jnp.array([[0, 1, 2, 2, 1]])
    inputs, targets = sequence[:, :-1], sequence[:, 1:]
    states = model(inputs, deterministic=True)[0, 1:]  # the positions with a real input
    table = model.items.embedding[...]
    real = targets[0, 1:]
    pos, neg = (states * table[real]).sum(-1), (states * table[3 - real]).sum(-1)
    expected = float(jnp.mean(-jax.nn.log_sigmoid(pos) - jax.nn.log_sigmoid(-neg)))
    for seed in range(3):
        loss, _ = sasrec.loss_fn(model, {"sequence": sequence}, jax.random.key(seed))
        assert float(loss) == pytest.approx(expected, rel=1e-5)
    with pytest.raises(ValueError, match="at least 2 items"):
        sasrec.SASRecConfig(num_items=1, loss="bce")


def test_fit_end_to_end_with_early_stopping(split, tmp_path):
    """learning_rate 0: the validation metric cannot improve, so patience 1 stops at the second evaluation and the
    best step is the first; fit still writes metrics, TensorBoard events and checkpoints and tests the best model."""
    config = tiny_train_config(num_steps=40, eval_every_steps=4, log_every_steps=2, tensorboard=True,
                               async_checkpointing=True)
    config.optimizer.learning_rate = 0.0
    config.early_stopping.patience = 1
    trainer = Trainer(tiny_family(dropout=0.0, attention_dropout=0.0), config, tmp_path)
    result = trainer.fit(split)

    assert result.stopped_early
    assert result.best_step == 4 and result.steps == 8
    assert [h["step"] for h in result.history] == [4, 8]
    first, second = (h["validation/recall@10"] for h in result.history)
    assert first == second == result.best_metric
    for metrics in (result.validation, result.test):
        assert metrics["num_users"] == split.num_users
        for k in (1, 5, 10):
            assert 0.0 <= metrics[f"ndcg@{k}"] <= metrics[f"recall@{k}"] <= 1.0
    assert result.validation["recall@10"] == pytest.approx(result.best_metric)  # the default stopping metric

    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in records if "train/loss" in r]
    assert [r["step"] for r in train] == [2, 4, 6, 8]
    assert all(math.isfinite(r["train/loss"]) and r["train/learning_rate"] == 0.0 for r in train)
    assert all(r["train/examples_per_s"] > 0 for r in train)
    assert [r["step"] for r in records if "validation/ndcg@10" in r] == [4, 8]
    test_records = [r for r in records if "test/ndcg@10" in r]
    assert len(test_records) == 1 and test_records[0]["step"] == 4
    assert test_records[0]["test/ndcg@10"] == pytest.approx(result.test["ndcg@10"])
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
    assert checkpoint_steps(tmp_path) == [4, 8]
    # The parameters fit returns are the (unchanged, lr 0) parameters of the best step.
    assert all(np.all(np.isfinite(v)) for v in flat_params(trainer.best_params).values())
    # Started again in the same workdir (a sweep rerunning a point that failed after training): it had stopped
    # early, so it trains no further and returns the same best step.
    again = Trainer(tiny_family(dropout=0.0, attention_dropout=0.0), config, tmp_path).fit(split, False)
    assert again.stopped_early and again.steps == 8 and again.best_step == 4
    assert checkpoint_steps(tmp_path) == [4, 8]



def test_tied_validation_keeps_the_earliest_best_checkpoint(split, tmp_path):
    """A plateau (learning rate 0: every validation ties) keeps the first evaluated step as the best, and its
    checkpoint survives the keep-last-2 window: orbax's best-N alone would keep the latest tied one instead."""
    config = tiny_train_config(num_steps=12, eval_every_steps=2, log_every_steps=2, keep_checkpoints=2)
    config.optimizer.learning_rate = 0.0
    config.early_stopping.patience = 10
    result = Trainer(tiny_family(dropout=0.0, attention_dropout=0.0), config, tmp_path).fit(split, False)
    assert len({h["validation/recall@10"] for h in result.history}) == 1
    assert result.best_step == 2 and result.steps == 12
    assert checkpoint_steps(tmp_path) == [2, 10, 12]


def test_max_train_seconds_stops_after_validating(split, tmp_path):
    """A spent wall-clock budget validates and saves the step in hand, then stops well before num_steps; with
    final_evaluation=False fit leaves evaluation to the caller; a restart in the same workdir does not train on."""
    config = tiny_train_config(num_steps=10_000, eval_every_steps=1_000, log_every_steps=2, max_train_seconds=1e-9)
    result = Trainer(tiny_family(), config, tmp_path).fit(split, final_evaluation=False)
    assert result.out_of_time and not result.stopped_early
    assert result.steps == 2 and [h["step"] for h in result.history] == [2] and result.best_step == 2
    assert result.validation == {} and result.test == {}
    assert checkpoint_steps(tmp_path) == [2]
    # Started again (a sweep rerunning an unfinished point): the budget is spent, so it trains no further.
    again = Trainer(tiny_family(), config, tmp_path).fit(split, final_evaluation=False)
    assert again.out_of_time and again.steps == 2 and again.best_step == 2
    assert checkpoint_steps(tmp_path) == [2]

def test_eval_max_users_validates_a_fixed_sample(split, tmp_path):
    """eval_max_users: in-training validation scores a fixed seeded sample of validation users (distinct, sorted,
    the same each time), so the recorded value is the metric on exactly those users; 0 means everyone."""
    from jaxrec.eval.evaluator import evaluate
    from jaxrec.train.trainer import _validation_sample

    sample = _validation_sample(split, 7, seed=0)
    assert len(np.unique(sample)) == 7 and np.all(np.diff(sample) > 0)
    np.testing.assert_array_equal(sample, _validation_sample(split, 7, seed=0))
    assert _validation_sample(split, 0, seed=0) is None and _validation_sample(split, split.num_users, 0) is None
    config = tiny_train_config(num_steps=2, eval_every_steps=2, eval_max_users=7)
    trainer = Trainer(tiny_family(), config, tmp_path)
    result = trainer.fit(split, final_evaluation=False)
    expected = evaluate(trainer.recommender(trainer.best_params), split, "validation",
                        max_history=trainer.family.history_length,
                        ks=tuple(config.eval_ks), users=sample)
    everyone = evaluate(trainer.recommender(trainer.best_params), split, "validation",
                        max_history=trainer.family.history_length, ks=tuple(config.eval_ks))
    # Coverage (distinct items recommended) tells the sample from everyone even for an untrained model.
    assert expected["coverage@10"] != pytest.approx(everyone["coverage@10"])
    for metric in ("ndcg@10", "recall@10", "coverage@10"):
        assert result.history[0][f"validation/{metric}"] == pytest.approx(expected[metric])


# ------------------------------------------------------------------------------------------------ 3. NaN
def test_nan_loss_raises_with_last_good_checkpoint(split, tmp_path):
    """The loss turns NaN from the third update on; fit must stop there, name the step and the last good checkpoint,
    and never save the diverged state."""
    base = tiny_family(dropout=0.0, attention_dropout=0.0)
    config = tiny_train_config(num_steps=12, checkpoint_every_steps=1, log_every_steps=50, eval_every_steps=1000,
                               async_checkpointing=True)
    with_rows = lambda s: {**base.training_columns(s), "row": np.arange(s.num_users, dtype=np.int32)}  # noqa: E731
    # fit draws its batches exactly like this; the rows of the first two batches are the "good" ones.
    probe = iter(example_batches(with_rows(split), batch_size=config.batch_size, seed=config.seed, num_epochs=None,
                                 padded=base.padded_columns))
    good = np.zeros(split.num_users, bool)
    for _ in range(2):
        good[next(probe)["row"]] = True
    assert not good.all()

    good_rows = jnp.asarray(good)

    def loss(model, batch, rng):
        value, aux = sasrec.loss_fn(model, batch, rng)
        return jnp.where(jnp.all(good_rows[batch["row"]]), value, jnp.nan), aux

    family = dataclasses.replace(base, loss=loss, training_columns=with_rows)
    trainer = Trainer(family, config, tmp_path)
    with pytest.raises(TrainingDiverged) as raised:
        trainer.fit(split)
    message = str(raised.value)
    assert "step 3" in message, message
    assert "Last good checkpoint: step 2" in message, message
    assert str(tmp_path / "checkpoints") in message
    assert checkpoint_steps(tmp_path) == [1, 2]
    assert not [p for p in (tmp_path / "checkpoints").iterdir() if "tmp" in p.name]


# ------------------------------------------------------------------------------------------------ 4. grad accum
@pytest.mark.parametrize("full_length", [True, False])
def test_gradient_accumulation_matches_full_batch(full_length):
    """grad_accum=2 over a batch of 2B gives the update of one batch of 2B (dropout off). With variable-length
    sequences the two micro-batches hold different numbers of target positions; the trainer weights them by the
    loss's aux["weight"], so the result must still equal the full batch's."""
    model_config = tiny_model_config(max_length=8, dropout=0.0, attention_dropout=0.0)
    split = tiny_split(min_length=11, mean_length=12.0) if full_length else tiny_split()
    family = sasrec.family(model_config)
    columns = family.training_columns(split)
    batch = next(iter(example_batches(columns, batch_size=32, seed=0, padded=family.padded_columns,
                                      shard_index=0, shard_count=1)))
    halves = [np.count_nonzero((half[:, :-1] != 0) & (half[:, 1:] != 0)) for half in np.split(batch["sequence"], 2)]
    if full_length:
        assert np.all(columns["sequence"] != 0) and halves[0] == halves[1]
    else:
        assert halves[0] != halves[1], f"test needs micro-batches of unequal size, got {halves}"

    trainer = Trainer(family, tiny_train_config(batch_size=32, grad_accum=1), "/nonexistent-unused")
    initial = trainer.init_state(10)
    copy = lambda state: jax.tree.map(jnp.copy, state)  # noqa: E731  (train_step donates its input)
    results = {}
    for accumulation in (1, 2):
        trainer.config.grad_accum = accumulation
        trainer._compile_steps()
        state, metrics = copy(initial), None
        for _ in range(2):  # two updates, so Adam's second moment is not just g^2
            state, metrics = trainer.train_step(state, shard_batch(batch, trainer.mesh))
        results[accumulation] = (float(metrics["loss"]), float(metrics["grad_norm"]), flat_params(state.params))
    (loss1, norm1, params1), (loss2, norm2, params2) = results[1], results[2]
    assert loss2 == pytest.approx(loss1, rel=1e-5) and norm2 == pytest.approx(norm1, rel=1e-4)
    before = flat_params(initial.params)
    assert any(not np.allclose(params1[n], before[n]) for n in before)
    for name in params1:
        np.testing.assert_allclose(params2[name], params1[name], rtol=1e-5, atol=1e-5, err_msg=name)


# ------------------------------------------------------------------------------------------------ 5. resume
def _progress(path: Path) -> list[tuple[int, str]]:
    if not path.exists():
        return []
    lines = [line.split() for line in path.read_text().splitlines()]
    return [(int(fields[0]), fields[1]) for fields in lines if len(fields) == 2]  # skip a line being written


def _start_worker(workdir: Path, cache: Path | None, *args: str, devices: int | None = None) -> subprocess.Popen:
    workdir.mkdir(parents=True, exist_ok=True)
    with (workdir / "worker.log").open("a") as log:
        return subprocess.Popen([sys.executable, str(TRAIN_WORKER), str(workdir), *args], stdout=log,
                                stderr=subprocess.STDOUT, env=worker_env(devices, cache))


@pytest.fixture
def start_worker():
    """`_start_worker`, killing whatever is still running when the test ends (a failed test leaves no process)."""
    started: list[subprocess.Popen] = []

    def start(*args, **kwargs) -> subprocess.Popen:
        started.append(_start_worker(*args, **kwargs))
        return started[-1]

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _finish(proc: subprocess.Popen, workdir: Path, timeout: float = 180) -> int:
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        pytest.fail(f"worker timed out; log:\n{(workdir / 'worker.log').read_text()[-4000:]}")


def _wait_for_step(proc: subprocess.Popen, workdir: Path, step: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        progress = _progress(workdir / "progress-0.txt")
        if progress and progress[-1][0] >= step:
            return
        if proc.poll() is not None:
            pytest.fail(f"worker exited ({proc.returncode}) before step {step}; log:\n"
                        f"{(workdir / 'worker.log').read_text()[-4000:]}")
        time.sleep(0.02)
    proc.kill()
    pytest.fail(f"worker did not reach step {step} in {timeout} s")


def _assert_same_run(workdir: Path, reference: Path) -> None:
    params, expected = np.load(workdir / "params-0.npz"), np.load(reference / "params-0.npz")
    assert sorted(params.files) == sorted(expected.files)
    for name in expected.files:
        assert np.array_equal(params[name], expected[name]), f"{name} differs after resuming"
    result, expected_result = (json.loads((d / "result-0.json").read_text()) for d in (workdir, reference))
    assert result["validation"] == expected_result["validation"] and result["test"] == expected_result["test"]
    assert result["best_step"] == expected_result["best_step"] == 40
    # Every loss the resumed run computed is bit-identical to the uninterrupted run's at the same step.
    reference_losses = dict(_progress(reference / "progress-0.txt"))
    for step, loss in _progress(workdir / "progress-0.txt"):
        assert loss == reference_losses[step], f"loss at step {step} differs"


def test_kill_and_sigterm_resume_exactly(tmp_path, tmp_path_factory, start_worker):
    """SIGKILL (anywhere, possibly mid-save), SIGINT (Ctrl-C, at a plain step) or SIGTERM (at a checkpoint step),
    then the same command again: the resumed run ends with exactly the parameters, metrics and losses of an
    uninterrupted one."""
    cache = session_cache_dir(tmp_path_factory)
    reference = tmp_path / "reference"
    assert _finish(start_worker(reference, cache), reference) == 0
    ref_progress = _progress(reference / "progress-0.txt")
    assert [s for s, _ in ref_progress] == list(range(1, 41))
    assert float.fromhex(ref_progress[-1][1]) < float.fromhex(ref_progress[0][1])
    assert checkpoint_steps(reference) == [35, 40]

    # Three interrupted runs at once. SIGKILL once step 17 is done (checkpoints every 5 steps, saved
    # asynchronously); SIGINT while the run waits after step 12 (a plain step), SIGTERM after step 15 (a checkpoint
    # step: the periodic save already wrote it, the SIGTERM save must not collide with it).
    killed, term12, term15 = tmp_path / "killed", tmp_path / "term12", tmp_path / "term15"
    kill_proc = start_worker(killed, cache, "--sleep", "0.1")
    term_procs = {term12: (start_worker(term12, cache, "--pause-at", "12"), 12, signal.SIGINT),
                  term15: (start_worker(term15, cache, "--pause-at", "15"), 15, signal.SIGTERM)}
    _wait_for_step(kill_proc, killed, 17)
    kill_proc.send_signal(signal.SIGKILL)
    for workdir, (proc, step, number) in term_procs.items():
        _wait_for_step(proc, workdir, step)
        proc.send_signal(number)
    assert _finish(kill_proc, killed) == -signal.SIGKILL
    killed_at = _progress(killed / "progress-0.txt")[-1][0]
    assert 17 <= killed_at < 40 and not (killed / "params-0.npz").exists()
    assert checkpoint_steps(killed)[-1] <= killed_at
    for workdir, (proc, step, number) in term_procs.items():
        assert _finish(proc, workdir) == 128 + number, (workdir / "worker.log").read_text()[-4000:]
        assert _progress(workdir / "progress-0.txt")[-1][0] == step and not (workdir / "params-0.npz").exists()
        assert checkpoint_steps(workdir)[-1] == step  # saved at the step it stopped

    # Resume all three with the same command; each continues from its latest complete checkpoint.
    resumes = {d: (start_worker(d, cache), len(_progress(d / "progress-0.txt"))) for d in (killed, term12, term15)}
    for workdir, (proc, before) in resumes.items():
        assert _finish(proc, workdir) == 0, (workdir / "worker.log").read_text()[-4000:]
        steps = [s for s, _ in _progress(workdir / "progress-0.txt")]
        resumed_from = steps[before] - 1
        assert steps[before:] == list(range(resumed_from + 1, 41)), steps
        if workdir == killed:
            assert resumed_from % 5 == 0 and 10 <= resumed_from <= killed_at, steps
        else:
            assert resumed_from == term_procs[workdir][1]
        _assert_same_run(workdir, reference)


# ------------------------------------------------------------------------------------------------ 6. processes
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_two_process_training(tmp_path, start_worker):
    """Two jax processes on localhost (2 fake CPU devices each, gloo collectives) train one 4-device data-parallel
    model through Trainer.fit, each feeding its own half of every batch, and checkpoint to a shared folder."""
    workdir = tmp_path / "run"
    address = f"127.0.0.1:{_free_port()}"
    # No shared compilation cache here: two processes compiling the same program would write the same entry at once.
    procs = [start_worker(workdir, None, "--steps", "10", "--coordinator", address, "--num-processes", "2",
                           "--process-id", str(i), devices=2) for i in range(2)]
    deadline = time.monotonic() + 150
    codes = []
    for proc in procs:
        try:
            codes.append(proc.wait(timeout=max(deadline - time.monotonic(), 1)))
        except subprocess.TimeoutExpired:
            for p in procs:
                p.kill()
            pytest.fail(f"two-process run hung; log:\n{(workdir / 'worker.log').read_text()[-6000:]}")
    assert codes == [0, 0], (workdir / "worker.log").read_text()[-6000:]
    results = [json.loads((workdir / f"result-{i}.json").read_text()) for i in range(2)]
    for result in results:
        assert result["process_count"] == 2 and result["device_count"] == 4 and result["local_device_count"] == 2
        assert result["best_step"] == 10 and result["steps"] == 10
    assert results[0]["validation"] == results[1]["validation"] and results[0]["test"] == results[1]["test"]
    losses = [_progress(workdir / f"progress-{i}.txt") for i in range(2)]
    assert [s for s, _ in losses[0]] == list(range(1, 11))
    assert losses[0] == losses[1]
    assert all(math.isfinite(float.fromhex(loss)) for _, loss in losses[0])
    assert checkpoint_steps(workdir) == [5, 10]
    params = [np.load(workdir / f"params-{i}.npz") for i in range(2)]
    for name in params[0].files:
        assert np.array_equal(params[0][name], params[1][name]), name
    # Only process 0 writes metrics.
    assert (workdir / "metrics.jsonl").exists()


def test_bucketed_recommend_equals_untrimmed_model():
    """The evaluator adapter trims histories to length buckets and pads rows; recommendations must be exactly
    those of the model run on the full left-padded histories."""
    from flax import nnx

    family = tiny_family(max_length=12)
    split = tiny_split(num_users=300)
    trainer = Trainer(family, tiny_train_config(bucket_lengths=(2, 4, 8), eval_batch_size=64), "/nonexistent-unused")
    state = trainer.init_state(10)
    histories = split.histories("test", 12)
    assert len(set(np.count_nonzero(histories, axis=1).tolist())) > 4  # several buckets are exercised
    bucketed = trainer.recommender(state.params).recommend(histories, 10)
    model = nnx.merge(trainer._graphdef, state.params)
    direct = np.asarray(jax.jit(lambda h: sasrec.recommend(model, h, 10))(jnp.asarray(histories)))
    np.testing.assert_array_equal(bucketed, direct)


def test_last_only_forward_equals_full_forward_at_last_position():
    """`last_only` skips the final block's work for positions nobody reads; the last state must not change."""
    from flax import nnx

    model = sasrec.SASRec(tiny_model_config(max_length=12, num_layers=2), rngs=nnx.Rngs(0))
    histories = jnp.asarray(tiny_split(num_users=64).histories("test", 12))
    full = model(histories)[:, -1]
    last = model(histories, last_only=True)
    assert last.shape == (64, 1, full.shape[-1])
    np.testing.assert_allclose(np.asarray(last[:, 0]), np.asarray(full), rtol=1e-5, atol=1e-6)


def test_bf16_compute_keeps_fp32_master_weights_and_tracks_fp32():
    """compute_dtype=bfloat16 casts at use: parameters stay fp32, and the loss trajectory follows fp32's to within
    bf16 precision (8 mantissa bits: relative error ~ 4e-3 per op)."""
    family = tiny_family(dropout=0.0, attention_dropout=0.0)
    split = tiny_split()
    batch = next(iter(example_batches(family.training_columns(split), batch_size=32, seed=0,
                                      padded=family.padded_columns, shard_index=0, shard_count=1)))
    trajectories = {}
    for dtype in ("float32", "bfloat16"):
        trainer = Trainer(family, tiny_train_config(compute_dtype=dtype, batch_size=32), "/nonexistent-unused")
        state = trainer.init_state(30)
        losses = []
        for _ in range(30):
            state, metrics = trainer.train_step(state, shard_batch(batch, trainer.mesh))
            losses.append(float(metrics["loss"]))
        assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(state.params))
        trajectories[dtype] = np.asarray(losses)
    fp32, bf16 = trajectories["float32"], trajectories["bfloat16"]
    assert fp32[-1] < fp32[0] - 0.2  # it learns
    np.testing.assert_allclose(bf16, fp32, rtol=2e-2)
    assert not np.array_equal(bf16, fp32)  # bf16 really was used


def test_throughput_counts_the_tokens_of_one_column():
    """tokens/s counts the real positions once (the first padded column), however many columns describe them."""
    from jaxrec.train.trainer import _ThroughputWindow

    window = _ThroughputWindow("mask")
    window.add({"mask": np.array([[0, 1, 1], [1, 1, 1]]), "tokens": np.array([[0, 5, 6], [7, 8, 9]]),
                "target_mask": np.array([[0, 0, 1], [0, 1, 1]])})
    assert (window.examples, window.tokens) == (2, 5)
    assert _ThroughputWindow(None).tokens == 0
