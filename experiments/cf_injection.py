"""Collaborative-filtering injection probe (the scaling view of Liu et al. 2025): does LLM-as-RS gain from
collaborative signal it cannot learn from titles alone, and how does the gain move with the CF model's size and the
LLM's size?

    jaxrec sweep --sweep experiments/cf_injection.py --workdir runs/sweeps/cf_injection \
        [--sweep.base=configs/<beauty config with a sasrec and an llm model>.py] [--only 'sasrec=.*,llm=qwen3-0.6b']

Each point trains a SASRec, then an LLM-as-RS whose prompt gives every history item a slot token carrying that
SASRec's item embedding through a trained linear projection (`cf_source="sasrec"`; LoRA mode trains the projection
beside the adapters). Points: SASRec hidden sizes x LLM sizes (a grid), plus a no-CF control per LLM size
(`cf_source=""`, the same SASRec trained alongside, unused). The LLM sizes are the base config's shape fields at
`llm_sizes` multiples of its hidden and MLP widths (`llm_shapes=` names Qwen3 shapes instead, e.g.
`--sweep.llm_shapes="('qwen3-0.6b', 'qwen3-1.7b')"`, with `--sweep.mode=lora` and the base's checkpoint settings).
`sasrec_sizes` are SASRec hidden sizes (feed-forward = hidden, as experiments/sasrec_size.py). The results table
records the SASRec's and the LLM's recall per point and the projection's size (`components.cf_projection`).
"""

from jaxrec.sweep import Sweep, labelled, product


def get_sweep(base: str = "configs/llm_cf_synthetic.py", sasrec_sizes: tuple = (16, 64, 256),
              llm_sizes: tuple = (1, 2, 4), llm_shapes: tuple = (), mode: str = "", seeds: tuple = (0,)) -> Sweep:
    sasrec = labelled({f"sasrec={hidden}": {"hidden": hidden, "ffn_hidden": hidden,
                                            "num_heads": max(1, hidden // 64)} for hidden in sasrec_sizes},
                      prefix="models.sasrec.model.")
    if llm_shapes:
        llm_fields = {f"llm={shape}": {"shape": shape} for shape in llm_shapes}
    else:
        llm_fields = {f"llm=x{factor}": {"hidden_size": 64 * factor, "intermediate_size": 192 * factor,
                                         "head_dim": 16 * factor} for factor in llm_sizes}
    if mode:
        llm_fields = {label: {**fields, "mode": mode} for label, fields in llm_fields.items()}
    llm = labelled(llm_fields, prefix="models.llm.model.")
    control = labelled({"sasrec=none": {"cf_source": ""}}, prefix="models.llm.model.")
    return Sweep(name="cf_injection", base=base, seeds=seeds,
                 points=product(sasrec, llm) + product(control, llm),
                 description="LLM-as-RS with SASRec item embeddings injected, over SASRec x LLM sizes, "
                             "and a no-CF control")
