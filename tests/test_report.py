"""`jaxrec report`: results table loading, seed aggregation, fits, plots, report.md and fit.json."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from jaxrec.cli import main
from jaxrec.scaling.laws import LLM_AS_RS, SID_GR
from jaxrec.scaling.report import ResultsError, group_rows, load_results

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
M = 1e6
SID_TRUE = {"R0": 0.07, "A": 0.04, "a": 0.6, "B": 0.0, "b": 1.0, "gamma1": 0.0, "gamma2": 0.0}
LLM_TRUE = {"R0": 0.09, "A": 0.08, "a": 0.5, "B": 0.0, "b": 1.0, "gamma": 0.01, "beta": 0.0}


def _row(point, family, model, seed, components, recall, *, status="finished", overrides=None, seconds=60.0):
    trainable = components.get("recommender", components.get("lora", 0))
    total = sum(components.values())
    row = {"sweep": "sid_size", "point": f"{point}_s{seed}", "overrides": {**(overrides or {}), "seed": seed},
           "seed": seed, "data_fraction": 1.0, "model": model, "family": family, "status": status,
           "parameters": {"trainable": trainable, "frozen": total - trainable, "total": total,
                          "components": components},
           "metrics": {"validation/recall@10": recall * 1.05, "test/recall@10": recall, "test/ndcg@10": recall * 0.55,
                       "test/recall@5": recall * 0.7, "test_cold_start/recall@10": recall * 0.25,
                       "test_cold_start/ndcg@10": recall * 0.1, "test_cold_start/num_users": 120},
           "seconds": {"fit": seconds - 5, "test": 5.0, "total": seconds}, "device": "cpu",
           "workdir": f"runs/{point}_s{seed}", "config": {"data": {"path": "../shared/data/amazon-beauty-2014"}}}
    if status != "finished":
        row.pop("metrics")
    return row


def _write_sweep(path: Path) -> list[dict]:
    rng = np.random.default_rng(0)
    rows = []
    for d_model, n_rs in ((64, 0.8 * M), (128, 2.5 * M), (192, 5 * M), (256, 8 * M), (384, 13 * M), (512, 25 * M)):
        components = {"recommender": n_rs, "text_encoder": 22.7 * M, "quantizer": 0.3 * M}
        mean = float(SID_GR.predict(SID_TRUE, {k: np.array([v]) for k, v in components.items()})[0])
        for seed in (0, 1):
            rows.append(_row(f"tiger_d{d_model}", "tiger", "tiger", seed, components, mean + 4e-4 * rng.normal(),
                             overrides={"models.tiger.model.d_model": d_model}))
    for size, (lora, llm) in {"0.6B": (2 * M, 600 * M), "1.7B": (4 * M, 1700 * M), "4B": (8 * M, 4000 * M),
                              "8B": (12 * M, 8000 * M)}.items():
        components = {"lora": lora, "llm": llm}
        mean = float(LLM_AS_RS.predict(LLM_TRUE, {k: np.array([v]) for k, v in components.items()})[0])
        for seed in (0, 1):
            rows.append(_row(f"llm_{size}", "llm", "llm", seed, components, mean + 4e-4 * rng.normal(),
                             overrides={"models.llm.model.size": size}, seconds=600.0))
    rows.append(_row("tiger_d768", "tiger", "tiger", 0, {"recommender": 50 * M, "text_encoder": 22.7 * M,
                                                        "quantizer": 0.3 * M}, 0.0, status="failed",
                     overrides={"models.tiger.model.d_model": 768}))
    rows.append(_row("popularity", "popularity", "popularity", 0, {}, 0.012))
    path.mkdir(parents=True, exist_ok=True)
    (path / "results.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    return rows


def test_rows_are_grouped_by_configuration_across_seeds(tmp_path):
    rows = _write_sweep(tmp_path)
    loaded = load_results(tmp_path)
    assert loaded == rows
    groups, unfinished, notes = group_rows(loaded)
    tiger = [g for g in groups if g.family == "tiger"]
    assert [g.label for g in tiger] == [f"d_model={d}" for d in (64, 128, 192, 256, 384, 512)]
    assert all(len(g.rows) == 2 for g in tiger) and tiger[0].x == 0.8 * M
    assert [g.x for g in groups if g.family == "llm"] == [602 * M, 1704 * M, 4008 * M, 8012 * M]  # total params
    assert [r["point"] for r in unfinished] == ["tiger_d768_s0"] and not notes


def test_report_end_to_end(tmp_path, capsys):
    _write_sweep(tmp_path / "sweep")
    assert main(["report", "--workdir", str(tmp_path / "sweep"), "--bootstrap", "20"]) == 0
    out = tmp_path / "sweep" / "report"
    assert capsys.readouterr().out.strip() == str(out / "report.md")
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert pngs == ["llm_test_ndcg_10.png", "llm_test_recall_10.png", "sid_gr_vs_llm_as_rs_test_recall_10.png",
                    "tiger_test_ndcg_10.png", "tiger_test_recall_10.png"]
    for name in pngs:
        data = (out / name).read_bytes()
        assert data.startswith(PNG_SIGNATURE) and len(data) > 10_000, name
    report = (out / "report.md").read_text()
    assert "## SID-GR (TIGER): model `tiger`" in report and "## LLM-as-RS: model `llm`" in report
    assert "| d_model=512 | 25M | 25M | 48M |" in report  # config, recommender, trainable, total parameters
    assert "| 2 | 60 | cpu |" in report  # seeds, wall time, device
    assert "| tiger_d768_s0 | tiger | tiger | 0 | failed | runs/tiger_d768_s0 |" in report
    assert "paper (Table 1)" in report and "| R0 |" in report and "0.4529" in report
    assert "## Cold-start probe" in report and "| cold users |" in report and " | 120 |" in report
    assert "Not fitted: 4 distinct points cannot determine 4 free parameters" in report  # the LLM family
    for image in pngs:
        assert f"({image})" in report
    fits = json.loads((out / "fit.json").read_text())
    assert fits["dataset"] == "beauty" and fits["unfinished"][0]["status"] == "failed"
    tiger = next(f for f in fits["fits"] if f["model"] == "tiger" and f["metric"] == "test/recall@10")
    assert tiger["status"] == "fitted" and tiger["paper"]["A"] == 16.8
    parameters = tiger["fit"]["parameters"]
    assert parameters["B"] == {"value": 0.0, "fitted": False, "ci": None}
    assert parameters["R0"]["fitted"] and parameters["R0"]["ci"][0] < parameters["R0"]["value"] < parameters["R0"]["ci"][1]
    assert parameters["R0"]["value"] == pytest.approx(SID_TRUE["R0"], abs=0.01)
    assert tiger["fit"]["r2"] > 0.95 and tiger["fit"]["held_out"]["largest"]["point"] == "d_model=512"
    llm = next(f for f in fits["fits"] if f["model"] == "llm" and f["metric"] == "test/recall@10")
    assert llm["status"] == "not_fitted" and llm["reason"].endswith("a fit needs at least 5")


def test_malformed_results_name_the_file_and_line(tmp_path, capsys):
    rows = _write_sweep(tmp_path)
    lines = [json.dumps(row) for row in rows]
    lines[2] = lines[2][:-5]  # truncated JSON
    (tmp_path / "results.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(ResultsError, match=r"results\.jsonl:3: not valid JSON"):
        load_results(tmp_path)
    assert main(["report", "--workdir", str(tmp_path)]) == 2
    assert f"{tmp_path / 'results.jsonl'}:3" in capsys.readouterr().err
    del rows[4]["metrics"]
    (tmp_path / "results.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    with pytest.raises(ResultsError, match=r"results\.jsonl:5: a finished row needs a non-empty 'metrics'"):
        load_results(tmp_path)
    rows[4]["status"] = "done"
    (tmp_path / "results.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    with pytest.raises(ResultsError, match=r":5: status 'done' is not one of finished, failed, pending"):
        load_results(tmp_path)
    assert main(["report", "--workdir", str(tmp_path / "missing")]) == 2
    assert "no results table" in capsys.readouterr().err
    assert main(["report", "--workdir", str(tmp_path), "--fix", "zeta=1"]) == 2


def test_cf_injected_configurations_sit_beside_their_controls_not_in_the_llm_fit(tmp_path):
    """CF-injected LLM-as-RS rows (a `cf_projection` component) are compared with the no-CF control of the same LLM
    settings, and left out of the LLM-as-RS fit: its law has no CF-source term."""
    rows = []
    for size, llm, control, injected in (("x1", 0.2 * M, 0.010, 0.016), ("x2", 0.8 * M, 0.014, 0.017)):
        llm_overrides = {"models.llm.model.hidden_size": size}
        rows.append(_row(f"none_{size}", "llm", "llm", 0, {"lora": 0, "llm": llm}, control,
                         overrides={**llm_overrides, "models.llm.model.cf_source": ""}))
        rows.append(_row(f"sasrec64_{size}", "llm", "llm", 0, {"lora": 0, "llm": llm, "cf_projection": 4096},
                         injected, overrides={**llm_overrides, "models.sasrec.model.hidden": 64}))
    (tmp_path / "results.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    assert main(["report", "--workdir", str(tmp_path), "--bootstrap", "5"]) == 0
    report = (tmp_path / "report" / "report.md").read_text()
    section = report[report.index("## CF-injection probe"):]
    assert "| 0.0160 | 0.0100 | +0.0060 | 1 |" in section and "| 0.0170 | 0.0140 | +0.0030 | 1 |" in section
    assert "| 200k | 4.1k |" in section  # LLM parameters, CF projection
    fits = json.loads((tmp_path / "report" / "fit.json").read_text())["fits"]
    llm = next(f for f in fits if f["metric"] == "test/recall@10")
    assert [p["mean"] for p in llm["points"]] == [0.010, 0.014]  # the controls only


def test_replicates_over_other_seeds_equal_sizes_and_unknown_sizes(tmp_path):
    """Rows differing only in a non-training seed (the quantizer's) are replicates; configurations of equal size
    (a text-encoder sweep) plot side by side; a component of unknown size (null) leaves the fit out, saying why."""
    rows = [_row(f"enc_{encoder}_q{sid_seed}", "tiger", "tiger", 0,
                 {"recommender": 2 * M, "text_encoder": size, "quantizer": 0.3 * M}, 0.03 + 0.001 * sid_seed,
                 overrides={"sid.encoder": encoder, "sid.quantizer.seed": sid_seed})
            for encoder, size in (("mini", 22.7 * M), ("base", 110 * M)) for sid_seed in (0, 1)]
    groups, _, notes = group_rows(rows)
    assert [len(g.rows) for g in groups] == [2, 2] and groups[0].x == groups[1].x and not notes
    (tmp_path / "results.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    assert main(["report", "--workdir", str(tmp_path), "--bootstrap", "5"]) == 0
    assert (tmp_path / "report" / "tiger_test_recall_10.png").read_bytes().startswith(PNG_SIGNATURE)
    rows[0]["parameters"]["components"]["text_encoder"] = None  # e.g. a prebuilt SID table without diagnostics
    (tmp_path / "results.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    assert main(["report", "--workdir", str(tmp_path), "--bootstrap", "5"]) == 0
    fits = json.loads((tmp_path / "report" / "fit.json").read_text())
    tiger = next(f for f in fits["fits"] if f["model"] == "tiger" and f["metric"] == "test/recall@10")
    assert tiger["status"] == "not_fitted" and tiger["reason"] == "the rows have no parameter counts for text_encoder"
