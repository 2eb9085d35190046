"""A tiny SASRec training run through `Trainer.fit`, as a subprocess of tests/test_trainer.py.

    python tests/_train_worker.py WORKDIR [--steps 40] [--sleep 0.0] [--pause-at STEP]
                                          [--coordinator HOST:PORT --num-processes N --process-id I]

Resumes from WORKDIR/checkpoints automatically (that is what fit does). While training it appends "<step> <loss>"
to WORKDIR/progress-<process>.txt after every step, so the test can kill it at a known point. On completion it
writes WORKDIR/result-<process>.json (FitResult) and WORKDIR/params-<process>.npz (the best parameters).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("workdir", type=Path)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--checkpoint-every", type=int, default=5)
    parser.add_argument("--sleep", type=float, default=0.0, help="seconds to pause after each step")
    parser.add_argument("--pause-at", type=int, default=0,
                        help="after this step, wait (up to 60 s) until a SIGTERM or SIGINT has been received")
    parser.add_argument("--coordinator", default=None)
    parser.add_argument("--num-processes", type=int, default=1)
    parser.add_argument("--process-id", type=int, default=0)
    args = parser.parse_args()

    import jax

    if args.coordinator:
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        from jaxrec.train.mesh import initialize_distributed

        initialize_distributed(args.coordinator, args.num_processes, args.process_id)

    import numpy as np
    from flax import nnx

    from _multidevice_worker import tiny_family, tiny_split, tiny_train_config
    from jaxrec.train.trainer import Trainer

    process = jax.process_index()
    progress = args.workdir / f"progress-{process}.txt"

    class RecordingTrainer(Trainer):
        """Appends each finished step (and its loss) to the progress file; optionally slows training down."""

        def _compile_steps(self) -> None:
            super()._compile_steps()
            jitted, trainer = self.train_step, self

            def train_step(state, batch):
                state, metrics = jitted(state, batch)
                line = f"{int(state.step)} {float(metrics['loss']).hex()}\n"
                with progress.open("a") as f:
                    f.write(line)
                if args.sleep:
                    time.sleep(args.sleep)
                if int(state.step) == args.pause_at:
                    deadline = time.monotonic() + 60
                    while trainer._stop_signal is None and time.monotonic() < deadline:
                        time.sleep(0.01)
                return state, metrics

            self.train_step = train_step

    config = tiny_train_config(num_steps=args.steps, checkpoint_every_steps=args.checkpoint_every,
                               eval_every_steps=10_000, log_every_steps=10, async_checkpointing=True,
                               tensorboard=False, progress=False, keep_checkpoints=2)
    trainer = RecordingTrainer(tiny_family(), config, args.workdir)
    result = trainer.fit(tiny_split())
    params = {".".join(map(str, path)): np.asarray(jax.device_get(v.get_value()))
              for path, v in nnx.to_flat_state(trainer.best_params)}
    np.savez(args.workdir / f"params-{process}.npz", **params)
    (args.workdir / f"result-{process}.json").write_text(json.dumps({
        "best_step": result.best_step, "steps": result.steps, "validation": result.validation,
        "test": result.test, "process_count": jax.process_count(), "device_count": jax.device_count(),
        "local_device_count": jax.local_device_count()}))


if __name__ == "__main__":
    main()
