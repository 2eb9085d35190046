"""Training core: mesh and logical sharding, optimizers, the pure jitted train step, orbax checkpoints, metrics."""
