"""SID-path speed on this machine, one run: MiniLM encoding of the Beauty catalogue (ours vs sentence-transformers on
PyTorch 2.13.0, the same texts), RQ-KMeans 3 x 256 on the 12,101 x 384 embeddings and RQ-VAE 3 x 256 for 3,000 steps.

    python -m benchmarks.sid_speed [--data ../shared/data/amazon-beauty-2014]

Peer set-up (never a project dependency): pip install torch==2.13.0 scikit-learn &&
pip install --no-deps sentence-transformers==6.2.0 (its declared `torch` would pull CUDA wheels).

Targets (SID issue): our encoding at least as fast as sentence-transformers; RQ-KMeans <= 15 s including compilation;
RQ-VAE 3,000 steps <= 60 s. Quantizer timings run in a fresh Python process each, so compilation is included.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.record import record

ROOT = Path(__file__).resolve().parent.parent

QUANTIZER_SNIPPET = """
import json, sys, time
started = time.perf_counter()
import numpy as np
from jaxrec.sid.quantizers import QuantizerConfig, quantize
x = np.load(sys.argv[1])
config = QuantizerConfig(**json.loads(sys.argv[2]))
loaded = time.perf_counter()
q = quantize(x, config)
done = time.perf_counter()
print(json.dumps({"seconds": done - loaded, "seconds_with_imports": done - started,
                  "distinct_codes": int(len(np.unique(q.codes, axis=0))), "level_errors": q.level_errors,
                  "info": q.info}))
"""


def beauty_texts(data: str) -> list[str]:
    from jaxrec.config import load_config
    from jaxrec.data.sources import load_dataset
    from jaxrec.text.item_text import item_texts

    sid = load_config(str(ROOT / "configs" / "sid_beauty.py")).sid
    return item_texts(load_dataset("p5", data).catalog, tuple(sid.template), sid.separator)[0]


def time_ours(texts: list[str]) -> tuple[dict, np.ndarray]:
    from jaxrec.text.embed import encode_texts
    from jaxrec.text.encoders import load_text_encoder

    started = time.perf_counter()
    encoder = load_text_encoder("minilm")
    loaded = time.perf_counter()
    first = encode_texts(encoder, texts, progress=False)  # includes compiling each length bucket
    first_done = time.perf_counter()
    second = encode_texts(encoder, texts, progress=False)  # compiled
    second_done = time.perf_counter()
    np.testing.assert_array_equal(first, second)
    return {"load_seconds": loaded - started, "first_seconds": first_done - loaded,
            "warm_seconds": second_done - first_done}, first


def time_sentence_transformers(texts: list[str], batch_sizes: tuple[int, ...]) -> tuple[dict, np.ndarray]:
    import torch
    from sentence_transformers import SentenceTransformer

    from jaxrec.text.encoders import minilm_folder

    model = SentenceTransformer(str(minilm_folder()), device="cpu")
    results, embeddings = {"torch": torch.__version__, "threads": torch.get_num_threads()}, None
    for batch_size in batch_sizes:
        model.encode(texts[:256], batch_size=batch_size)  # warm-up
        started = time.perf_counter()
        embeddings = model.encode(texts, batch_size=batch_size, convert_to_numpy=True)
        results[f"batch{batch_size}_seconds"] = time.perf_counter() - started
    return results, embeddings


def time_quantizer(embeddings_path: Path, config: dict) -> dict:
    output = subprocess.run([sys.executable, "-c", QUANTIZER_SNIPPET, str(embeddings_path), json.dumps(config)],
                            check=True, capture_output=True, text=True, cwd=ROOT).stdout
    return json.loads(output.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "amazon-beauty-2014"))
    parser.add_argument("--st-batch-sizes", default="32,64,128")
    args = parser.parse_args()
    texts = beauty_texts(args.data)
    ours, embeddings = time_ours(texts)
    peer, peer_embeddings = time_sentence_transformers(texts, tuple(int(b) for b in args.st_batch_sizes.split(",")))
    best_peer = min(v for k, v in peer.items() if k.endswith("_seconds"))
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "embeddings.npy"
        np.save(path, embeddings)
        rq_kmeans = time_quantizer(path, {"method": "rq_kmeans", "levels": 3, "codebook_size": 256})
        rq_vae = time_quantizer(path, {"method": "rq_vae", "levels": 3, "codebook_size": 256, "steps": 3000})
    results = {
        "texts": len(texts),
        "mean_words": float(np.mean([len(t.split()) for t in texts])),
        "encode/ours_first_run_seconds": ours["first_seconds"],
        "encode/ours_warm_seconds": ours["warm_seconds"],
        "encode/ours_load_seconds": ours["load_seconds"],
        "encode/sentence_transformers": peer,
        "encode/sentence_transformers_best_seconds": best_peer,
        "encode/speedup_first_run_vs_best_peer": best_peer / ours["first_seconds"],
        "encode/speedup_warm_vs_best_peer": best_peer / ours["warm_seconds"],
        "encode/max_abs_diff_vs_sentence_transformers": float(np.abs(embeddings - peer_embeddings).max()),
        "rq_kmeans/seconds_including_compile": rq_kmeans["seconds"],
        "rq_kmeans/lloyd_iterations": rq_kmeans["info"]["lloyd_iterations"],
        "rq_kmeans/distinct_codes": rq_kmeans["distinct_codes"],
        "rq_vae/seconds_including_compile": rq_vae["seconds"],
        "rq_vae/steps": rq_vae["info"]["steps"],
        "rq_vae/batch_size": 256,
        "rq_vae/relative_reconstruction_error": rq_vae["info"]["relative_reconstruction_error"],
        "rq_vae/distinct_codes": rq_vae["distinct_codes"],
    }
    record("sid_speed", results)


if __name__ == "__main__":
    main()
