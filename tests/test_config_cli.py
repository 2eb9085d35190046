"""Configs as code with --config.a.b=value overrides, config_hash, and the `jaxrec` command line."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import ml_collections
import pytest

from jaxrec.cli import main
from jaxrec.config import ConfigError, apply_overrides, config_hash, load_config
from jaxrec.data.splits import leave_one_out
from jaxrec.data.synthetic import SyntheticConfig, generate
from jaxrec.eval.evaluator import evaluate
from jaxrec.models.popularity import Popularity

REPO_ROOT = Path(__file__).resolve().parent.parent
QUICKSTART = REPO_ROOT / "configs" / "quickstart.py"

CONFIG_TEXT = '''
import ml_collections


def get_config():
    config = ml_collections.ConfigDict()
    config.lr = 0.001
    config.steps = 10
    config.ks = (1, 5)
    config.name = "run"
    config.flag = False
    config.nested = ml_collections.ConfigDict({"depth": 2, "path": "a/b"})
    return config
'''


@pytest.fixture
def config_file(tmp_path):
    path = tmp_path / "my_config.py"
    path.write_text(CONFIG_TEXT)
    return path


def test_load_without_overrides(config_file):
    config = load_config(config_file)
    assert config.to_dict() == {"lr": 0.001, "steps": 10, "ks": (1, 5), "name": "run", "flag": False,
                                "nested": {"depth": 2, "path": "a/b"}}


def test_overrides_of_every_type(config_file):
    config = load_config(config_file, [
        "--config.lr=3e-4", "--config.steps=20", "--config.ks=(10, 20, 50)", "--config.name=hello world",
        "--config.flag=True", "--config.nested.depth=5", "--config.nested.path=/x/y=z"])
    assert config.lr == pytest.approx(3e-4) and isinstance(config.lr, float)
    assert config.steps == 20 and isinstance(config.steps, int)
    assert config.ks == (10, 20, 50)
    assert config.name == "hello world"
    assert config.flag is True
    assert config.nested.depth == 5
    assert config.nested.path == "/x/y=z"  # split on the first '=' only


def test_string_fields_are_not_parsed(config_file):
    config = load_config(config_file, ["--config.name=123", "--config.nested.path=(1, 2)"])
    assert config.name == "123"
    assert config.nested.path == "(1, 2)"


def test_int_into_float_field(config_file):
    config = load_config(config_file, ["--config.lr=1"])
    assert config.lr == 1.0 and isinstance(config.lr, float)


def test_last_override_wins(config_file):
    assert load_config(config_file, ["--config.steps=3", "--config.steps=4"]).steps == 4


def test_unknown_field_names_the_field(config_file):
    with pytest.raises(ConfigError) as info:
        load_config(config_file, ["--config.nested.nope=1"])
    assert str(info.value) == "--config.nested.nope: no field 'nested.nope' in the config (fields here: depth, path)"
    with pytest.raises(ConfigError) as info:
        load_config(config_file, ["--config.bogus.depth=1"])
    assert str(info.value) == "--config.bogus.depth: no field 'bogus' in the config"
    with pytest.raises(ConfigError, match=re.escape("no field 'lr2' in the config")):
        load_config(config_file, ["--config.lr2=1"])


@pytest.mark.parametrize("override, field", [
    ("--config.steps=2.5", "steps"), ("--config.flag=true", "flag"), ("--config.ks=5", "ks"),
    ("--config.lr=fast", "lr"), ("--config.nested.depth=(1, 2)", "depth"),
])
def test_wrong_type_error(config_file, override, field):
    with pytest.raises(ConfigError) as info:
        load_config(config_file, [override])
    message = str(info.value)
    assert message.startswith(override + ": "), message
    assert f"'{field}'" in message


def test_override_below_a_leaf_is_a_config_error(config_file):
    """`--config.name.x=1` where `name` is a string: a ConfigError naming the field, not an AttributeError /
    TypeError from indexing into the string."""
    for override in ("--config.name.x=1", "--config.name.r=1", "--config.steps.x=1"):
        with pytest.raises(ConfigError, match=re.escape(override.split("=")[0])):
            load_config(config_file, [override])


@pytest.mark.parametrize("override", ["--lr=1", "--config.lr", "config.lr=1"])
def test_malformed_override(config_file, override):
    with pytest.raises(ConfigError, match=re.escape(f"override {override!r} is not of the form "
                                                    f"--config.field=value")):
        load_config(config_file, [override])


def test_config_file_errors(tmp_path):
    with pytest.raises(ConfigError, match=re.escape(f"config file not found: {tmp_path / 'nope.py'}")):
        load_config(tmp_path / "nope.py")
    empty = tmp_path / "empty.py"
    empty.write_text("x = 1\n")
    with pytest.raises(ConfigError, match=re.escape(f"{empty}: defines no get_config()")):
        load_config(empty)
    wrong = tmp_path / "wrong.py"
    wrong.write_text("def get_config():\n    return {'a': 1}\n")
    with pytest.raises(ConfigError, match=re.escape(f"{wrong}: get_config() returned dict, expected a ConfigDict")):
        load_config(wrong)


def test_config_hash(config_file):
    first, second = load_config(config_file), load_config(config_file)
    assert config_hash(first) == config_hash(second)
    assert re.fullmatch(r"[0-9a-f]{16}", config_hash(first))
    changed = load_config(config_file, ["--config.steps=11"])
    assert config_hash(changed) != config_hash(first)
    # Same content in a different insertion order hashes the same.
    reordered = ml_collections.ConfigDict()
    for key in reversed(list(first.keys())):
        reordered[key] = first[key]
    assert config_hash(reordered) == config_hash(first)
    apply_overrides(changed, ["--config.steps=10"])
    assert config_hash(changed) == config_hash(first)


def test_quickstart_config_loads():
    config = load_config(QUICKSTART, ["--config.data.options.num_users=300", "--config.eval.ks=(5, 10)"])
    assert config.data.source == "synthetic"
    assert config.data.options.num_users == 300
    assert config.eval.ks == (5, 10)
    assert config.models.popularity.family == "popularity"


# -------------------------------------------------------------------------------------------------- CLI


# The quickstart's SASRec, shrunk so CLI tests stay fast.
# The quickstart at test size: 1-epoch tiny SASRec and TIGER, 8 codes per SID level (catalogues hold 15-150 items),
# a 4-step tiny LLM-as-RS.
TINY_RUN = ["--config.models.sasrec.train.num_epochs=1", "--config.models.sasrec.train.batch_size=16",
            "--config.models.sasrec.model.hidden=16", "--config.models.sasrec.model.ffn_hidden=32",
            "--config.models.sasrec.model.num_layers=1", "--config.sid.quantizer.codebook_size=8",
            "--config.models.tiger.train.num_epochs=1", "--config.models.tiger.train.batch_size=64",
            "--config.models.tiger.model.num_layers=1", "--config.models.tiger.model.d_model=16",
            "--config.models.tiger.model.d_ff=32", "--config.models.tiger.model.dropout=0.0",
            "--config.models.tiger.model.beam_width=20",
            "--config.models.llm.train.num_steps=4", "--config.models.llm.train.batch_size=16",
            "--config.models.llm.model.tokenizer_vocab_size=300", "--config.models.llm.model.hidden_size=16",
            "--config.models.llm.model.intermediate_size=32", "--config.models.llm.model.num_layers=1",
            "--config.models.llm.model.head_dim=8"]


def test_cli_run_quickstart(tmp_path):
    workdir = tmp_path / "run"
    code = main(["run", "--config", str(QUICKSTART), "--workdir", str(workdir),
                 "--config.data.options.num_users=300", "--config.data.options.num_items=150", *TINY_RUN])
    assert code == 0
    metrics = json.loads((workdir / "metrics.json").read_text())
    assert set(metrics) == {"popularity", "sasrec", "tiger", "llm"}
    for constrained in ("tiger", "llm"):  # constrained beams only reach real items (SIDs; titles)
        assert metrics[constrained]["test"]["invalid_rate@20"] == 0.0
    for model in metrics:
        for stage in ("validation", "test"):
            result = metrics[model][stage]
            assert 0.0 <= result["recall@10"] <= 1.0
            assert result["num_users"] == 300
            assert {f"{m}@{k}" for m in ("recall", "ndcg") for k in (1, 5, 10, 20)} <= set(result)
    assert (workdir / "sasrec" / "fit.json").exists() and (workdir / "sasrec" / "metrics.jsonl").exists()
    # The numbers are those of the library on the overridden config (so the overrides took effect).
    split = leave_one_out(generate(SyntheticConfig(num_users=300, num_items=150, seed=0)))
    expected = evaluate(Popularity.fit(split), split, "test", max_history=50)
    assert metrics["popularity"]["test"] == pytest.approx(expected)
    saved = json.loads((workdir / "config.json").read_text())
    assert saved["config"]["data"]["options"]["num_users"] == 300
    assert re.fullmatch(r"[0-9a-f]{16}", saved["config_hash"])
    report = json.loads((workdir / "data_report.json").read_text())
    assert report["stats"]["users"] == 300 and report["stats"]["items"] == 150
    # The SID stage ran: a table of every item, codebooks of the overridden size.
    diagnostics = json.loads((workdir / "sid" / "sid_diagnostics.json").read_text())
    assert diagnostics["items"] == 150 and diagnostics["final_sids_unique"]
    assert [level["codes_used"] <= 8 for level in diagnostics["levels"]] == [True, True, True]
    # Parameter counts and the device, per model (the sweep results table reads them).
    minilm = 22_565_376  # all-MiniLM-L6-v2's weights
    assert diagnostics["parameters"] == {"text_encoder": minilm, "quantizer": 3 * 8 * 384}
    counts = {model: metrics[model]["parameters"] for model in metrics}
    assert counts["popularity"] == {"trainable": 0, "frozen": 0, "total": 0, "components": {}}
    assert counts["sasrec"]["components"] == {"recommender": counts["sasrec"]["trainable"]} and \
        counts["sasrec"]["frozen"] == 0 and counts["sasrec"]["trainable"] > 0
    assert counts["tiger"]["components"] == {"recommender": counts["tiger"]["trainable"], "text_encoder": minilm,
                                             "quantizer": 3 * 8 * 384}
    assert counts["llm"]["components"] == {"lora": 0, "llm": counts["llm"]["total"]}
    assert all(re.fullmatch(r".+ x\d+", metrics[model]["device"]) for model in metrics)


def test_cli_predict_from_a_run(tmp_path, capsys):
    workdir = tmp_path / "run"
    assert main(["run", "--config", str(QUICKSTART), "--workdir", str(workdir), "--config.data.options.num_users=100",
                 "--config.data.options.num_items=40", *TINY_RUN]) == 0
    capsys.readouterr()
    assert main(["predict", "--workdir", str(workdir), "--model", "tiger", "--k", "5",
                 "--history", "3 17 8", "--history", "40"]) == 0
    answers = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [a["history"] for a in answers] == [[3, 17, 8], [40]]
    for answer in answers:
        assert len(answer["items"]) == 5 == len(set(answer["items"])) and all(1 <= i <= 40 for i in answer["items"])
        assert len(answer["titles"]) == 5
    # The same history given as raw ids gives the same answer.
    raw = " ".join(generate(SyntheticConfig(num_users=100, num_items=40, seed=0)).catalog.raw_ids[i - 1]
                   for i in (3, 17, 8))
    assert main(["predict", "--workdir", str(workdir), "--model", "tiger", "--k", "5", "--raw-ids",
                 "--history", raw]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[0])["items"] == answers[0]["items"]
    # Bad input: one line naming the problem, exit status 2.
    assert main(["predict", "--workdir", str(workdir), "--model", "tiger", "--history", "3 99"]) == 2
    assert "--history: line 1: '99' is not a known item id (1..40)" in capsys.readouterr().err
    assert main(["predict", "--workdir", str(workdir), "--model", "tiger", "--history", "3 \u00b2"]) == 2
    assert "--history: line 1: '\u00b2' is not a known item id (1..40)" in capsys.readouterr().err
    assert main(["predict", "--workdir", str(workdir), "--history", "3"]) == 2
    assert "choose a model with --model" in capsys.readouterr().err
    for k in ("0", "-1"):
        assert main(["predict", "--workdir", str(workdir), "--model", "tiger", "--k", k, "--history", "3"]) == 2
        assert f"--k must be at least 1, got {k}" in capsys.readouterr().err


def test_cli_predict_picks_the_only_model_of_an_untrained_run(tmp_path, capsys):
    config = tmp_path / "popularity.py"
    config.write_text('''
import ml_collections


def get_config():
    return ml_collections.ConfigDict({
        "data": {"source": "synthetic", "path": "", "on_short": "drop", "train_fraction": 1.0,
                 "options": {"num_users": 60, "num_items": 30, "seed": 0}},
        "eval": {"ks": (5,), "max_history": 5, "cold_start": False},
        "models": {"popularity": {"family": "popularity", "exclude_history": False}},
    })
''')
    assert main(["run", "--config", str(config), "--workdir", str(tmp_path / "run")]) == 0
    capsys.readouterr()
    assert main(["predict", "--workdir", str(tmp_path / "run"), "--k", "3", "--history", "1 2"]) == 0
    assert len(json.loads(capsys.readouterr().out)["items"]) == 3


def test_cli_data_stats_synthetic(capsys):
    assert main(["data", "stats", "synthetic:num_users=50,num_items=40"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["users"] == 50 and stats["items"] == 40
    assert stats["sequence_length"]["min"] >= 5


def test_cli_data_stats_p5_folder(p5_writer, capsys):
    folder = p5_writer([{"item_id": 1, "asin": "A"}, {"item_id": 2, "asin": "B"}],
                      ["1 1 2 1", "2 2 2"])
    assert main(["data", "stats", str(folder)]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert (stats["users"], stats["items"], stats["interactions"]) == (2, 2, 5)


def _assert_one_line_error(capsys, expected_fragment: str) -> str:
    captured = capsys.readouterr()
    error = captured.err.strip()
    assert "\n" not in error and "Traceback" not in error, captured.err
    assert error.startswith("jaxrec: error: "), error
    assert expected_fragment in error, error
    return error


def test_cli_bad_data_path(tmp_path, capsys):
    missing = tmp_path / "missing"
    assert main(["data", "stats", str(missing)]) == 2
    _assert_one_line_error(capsys, f"not a dataset folder: {missing}")
    assert main(["data", "stats", f"p5:{missing}"]) == 2
    _assert_one_line_error(capsys, f"P5 dataset folder not found: {missing}")


def test_cli_run_bad_data_path(tmp_path, capsys):
    code = main(["run", "--config", str(REPO_ROOT / "configs" / "popularity_beauty.py"), "--workdir",
                 str(tmp_path / "w"), f"--config.data.path={tmp_path / 'nowhere'}"])
    assert code == 2
    _assert_one_line_error(capsys, f"P5 dataset folder not found: {tmp_path / 'nowhere'}")


def test_cli_bad_file_names_file_and_line(p5_writer, capsys):
    folder = p5_writer([{"item_id": 1, "asin": "A"}, {"item_id": 2, "asin": "B"}],
                      ["1 1 2 1", "2 2 3"])
    assert main(["data", "stats", str(folder)]) == 2
    _assert_one_line_error(capsys, f"{folder / 'sequences.txt'}:2: item id '3' is not an item of the catalogue")


def test_cli_config_errors_exit_2(tmp_path, capsys):
    assert main(["run", "--config", str(QUICKSTART), "--workdir", str(tmp_path / "w"),
                 "--config.data.options.nope=3"]) == 2
    _assert_one_line_error(capsys, "--config.data.options.nope: no field 'data.options.nope' in the config")
    assert main(["run", "--config", str(tmp_path / "absent.py"), "--workdir", str(tmp_path / "w")]) == 2
    _assert_one_line_error(capsys, f"config file not found: {tmp_path / 'absent.py'}")


def test_cli_synthetic_option_of_wrong_type_exit_2(capsys):
    """A non-integer size in a synthetic spec is a data/config error: exit 2 and one line, not a traceback."""
    assert main(["data", "stats", "synthetic:num_users=1.5"]) == 2
    _assert_one_line_error(capsys, "num_users")


def test_cli_run_catalogue_smaller_than_max_k(tmp_path):
    """15 items while eval.ks goes up to 20: the run must still complete (lists padded with -1)."""
    code = main(["run", "--config", str(QUICKSTART), "--workdir", str(tmp_path / "w"),
                 "--config.data.options.num_users=100", "--config.data.options.num_items=15", *TINY_RUN])
    assert code == 0
    metrics = json.loads((tmp_path / "w" / "metrics.json").read_text())
    assert metrics["popularity"]["test"]["invalid_rate@20"] == pytest.approx(5 / 20)
    assert metrics["sasrec"]["test"]["invalid_rate@20"] == pytest.approx(5 / 20)


def test_cli_unknown_arguments_rejected(capsys):
    with pytest.raises(SystemExit) as info:
        main(["data", "stats", "synthetic", "--bogus"])
    assert info.value.code == 2
    assert "unrecognized arguments: --bogus" in capsys.readouterr().err


def test_console_script_help():
    script = Path(sys.executable).parent / "jaxrec"
    if not script.exists():
        pytest.fail(f"console script {script} is not installed (pip install -e . in this environment)")
    result = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: jaxrec")
    assert "run" in result.stdout and "data" in result.stdout


def test_console_script_data_stats():
    script = Path(sys.executable).parent / "jaxrec"
    result = subprocess.run([str(script), "data", "stats", "synthetic:num_users=20,num_items=10"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["users"] == 20
    bad = subprocess.run([str(script), "data", "stats", "/nonexistent/folder/xyz"], capture_output=True, text=True,
                         timeout=120)
    assert bad.returncode == 2
    assert bad.stderr.strip() == "jaxrec: error: not a dataset folder: /nonexistent/folder/xyz"
    assert bad.stdout == ""


def test_run_initializes_jax_distributed_when_configured(tmp_path, monkeypatch):
    import jaxrec.train.mesh as mesh

    calls = []
    monkeypatch.setattr(mesh, "initialize_distributed", lambda *args, **kwargs: calls.append((args, kwargs)))
    config = tmp_path / "popularity_only.py"  # the distributed start-up does not depend on the models
    config.write_text(
        "import ml_collections\n"
        "from jaxrec.train.defaults import distributed_config\n"
        "def get_config():\n"
        "    return ml_collections.ConfigDict({'distributed': distributed_config(),\n"
        "        'data': {'source': 'synthetic', 'path': '', 'on_short': 'drop',\n"
        "                 'options': {'num_users': 60, 'num_items': 40, 'seed': 0}},\n"
        "        'eval': {'ks': (5, 10), 'max_history': 20},\n"
        "        'models': {'popularity': {'family': 'popularity'}}})\n")
    assert main(["run", "--config", str(config), "--workdir", str(tmp_path / "a")]) == 0
    assert calls == []  # single process by default
    assert main(["run", "--config", str(config), "--workdir", str(tmp_path / "b"),
                 "--config.distributed.enabled=True", "--config.distributed.coordinator_address=10.0.0.1:1234",
                 "--config.distributed.num_processes=1", "--config.distributed.process_id=0"]) == 0
    assert calls == [(("10.0.0.1:1234", 1, 0), {"force": True})]


def test_eval_stages_limit_the_final_evaluation(tmp_path):
    """eval.stages lists the splits `jaxrec run` scores at the end (default validation and test)."""
    import ml_collections

    from jaxrec.pipeline import run

    config = ml_collections.ConfigDict({
        "data": {"source": "synthetic", "path": "", "on_short": "drop",
                 "options": {"num_users": 200, "num_items": 80, "seed": 0}},
        "eval": {"ks": (5, 10), "max_history": 20, "stages": ("test",)},
        "models": {"popularity": {"family": "popularity", "exclude_history": False}}})
    metrics = run(config, tmp_path / "test-only")["popularity"]
    assert "test" in metrics and "validation" not in metrics and metrics["test"]["num_users"] == 200
    config.eval.stages = ("validation",)  # no test split: the run and its summary line still complete
    validation = run(config, tmp_path / "validation-only")["popularity"]
    assert "validation" in validation and "test" not in validation
    del config.eval.stages
    both = run(config, tmp_path / "both")["popularity"]
    assert set(both) >= {"validation", "test"} and both["test"] == metrics["test"]
    # A typo is an error before any work, not test metrics filed under another name.
    config.eval.stages = ("valid", "test")
    with pytest.raises(ConfigError, match=re.escape("eval.stages: unknown stage 'valid'")):
        run(config, tmp_path / "typo")
    assert not (tmp_path / "typo" / "metrics.json").exists()
