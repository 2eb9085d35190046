"""LLM-as-RS size (Liu et al. 2025): Qwen3 0.6B, 1.7B, 4B, 8B and 14B with LoRA adapters of about 1% of the
model, generating the next item's title under the title trie.

    jaxrec sweep --sweep experiments/llm_size.py --workdir runs/sweeps/llm_size \
        --sweep.checkpoints=/models [--sweep.base=configs/<llm beauty config>.py] [--only qwen3-0.6b]

With `checkpoints` (a folder holding Hugging Face Qwen3-0.6B ... Qwen3-14B), each point fine-tunes that
checkpoint's LoRA adapters (points whose folder is absent are reported and skipped); without it, the points are
randomly initialised models of the same shapes (`shape=`), for cost and scaling studies of the machinery.
LoRA rank per size (all seven projections, alpha = 2 x rank), nearest 1% of the pretrained model (151,936-token
vocabulary): 0.6B r8 = 0.85%, 1.7B r16 = 1.01%, 4B r16 = 0.82%, 8B r32 = 1.07%, 14B r32 = 0.87%. The results table
records the exact counts (`components`: lora, llm).

The base is configs/llm_synthetic.py until an LLM-as-RS Beauty config lands (`--sweep.base=` selects it).
"""

from jaxrec.sweep import Sweep, labelled

RANKS = {"qwen3-0.6b": 8, "qwen3-1.7b": 16, "qwen3-4b": 16, "qwen3-8b": 32, "qwen3-14b": 32}
FOLDERS = {"qwen3-0.6b": "Qwen3-0.6B", "qwen3-1.7b": "Qwen3-1.7B", "qwen3-4b": "Qwen3-4B", "qwen3-8b": "Qwen3-8B",
           "qwen3-14b": "Qwen3-14B"}


def get_sweep(checkpoints: str = "", base: str = "configs/llm_synthetic.py", seeds: tuple = (0,)) -> Sweep:
    points = {}
    for shape, rank in RANKS.items():
        point = {"mode": "lora", "lora_rank": rank, "lora_alpha": float(2 * rank), "shape": shape}
        if checkpoints:
            point["checkpoint"] = f"{checkpoints.rstrip('/')}/{FOLDERS[shape]}"
        points[shape] = point
    return Sweep(name="llm_size", base=base, seeds=seeds, points=labelled(points, prefix="models.llm.model."),
                 requires=("models.llm.model.checkpoint",),
                 description="LLM-as-RS over Qwen3 0.6B-14B with LoRA at ~1%")
