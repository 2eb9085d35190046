"""The `jaxrec` command line.

  jaxrec data stats <folder | source:folder | synthetic[:k=v,...]>
  jaxrec data download amazon2014 --category Beauty --out DIR
  jaxrec data download movielens --variant ml-1m --out DIR
  jaxrec data tfds-build beauty_p5 --data-dir DIR --manual-dir ../shared/data/amazon-beauty-2014
  jaxrec run --config configs/<name>.py --workdir DIR [--config.a.b=value ...]
  jaxrec embed --config configs/sid_<name>.py --workdir DIR [--force] [--config.a.b=value ...]
  jaxrec sid --config configs/sid_<name>.py --workdir DIR [--force] [--config.a.b=value ...]
  jaxrec predict --workdir RUN [--model NAME] [--k 10] [--raw-ids] (--history "12 7 301" ... | --histories FILE)
  jaxrec report --workdir SWEEP [--metric test/recall@10] [--out DIR] [--bootstrap 200] [--fix NAME=VALUE ...]
  jaxrec sweep --sweep experiments/<name>.py --workdir DIR [--parallel N] [--only REGEX] [--dry-run | --collect |
               --emit-commands FILE|- [--hosts N]] [--rerun-changed] [--config.a.b=value ...] [--sweep.param=value ...]

`jaxrec sweep` runs every point of a sweep (a base config + override points, experiments/README.md) as `python -m
jaxrec run` in `DIR/<point id>/` (log.txt there), N at a time; finished points (metrics.json of the same config)
are skipped and unfinished ones resume from their checkpoints; `--config.*` overrides apply to every point and
`--sweep.*` set the sweep file's parameters. It then writes DIR/results.jsonl and DIR/results.csv (one row per
point and model). `--emit-commands` writes one shell line per unfinished point for a scheduler instead (`--hosts N`:
multi-host lines reading JAXREC_PROCESS_ID and JAXREC_COORDINATOR); `--collect` then rebuilds the results table
without running anything; `--dry-run` lists points, status and command. A point another process is running (its
run directory's lock held) is skipped, never started twice.

Data and config errors print one clear line (file, line or field, and what was expected) and exit with status 2.
`jaxrec run` in a directory another run is using (jaxrec.run_lock) exits with status 75.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    if extra and args.command not in ("run", "embed", "sid", "sweep"):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    import logging

    from jaxrec.config import ConfigError
    from jaxrec.data.download import DownloadError
    from jaxrec.data.types import DataError
    from jaxrec.sid.quantizers import QuantizerError
    from jaxrec.sid.table import SIDTableError
    from jaxrec.text.embed import EmbeddingsError
    from jaxrec.models.hf_loading import CheckpointError
    from jaxrec.run_lock import BUSY_EXIT_CODE, WorkdirBusy
    from jaxrec.scaling.report import ResultsError

    logging.basicConfig(level=logging.WARNING, format="[%(name)s] %(message)s", stream=sys.stderr)
    logging.getLogger("jaxrec").setLevel(logging.INFO)  # our progress; libraries (orbax, absl) stay quiet

    try:
        return args.handler(args, extra)
    except (DataError, ConfigError, DownloadError, QuantizerError, SIDTableError, EmbeddingsError,
            CheckpointError, ResultsError, FileNotFoundError) as error:
        print(f"jaxrec: error: {error}", file=sys.stderr)
        return 2
    except WorkdirBusy as error:
        print(f"jaxrec: error: {error}", file=sys.stderr)
        return BUSY_EXIT_CODE


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="jaxrec", description="Generative recommendation at scale in JAX.")
    commands = parser.add_subparsers(dest="command", required=True)

    data = commands.add_parser("data", help="inspect, download and convert datasets")
    data_commands = data.add_subparsers(dest="data_command", required=True)
    stats = data_commands.add_parser("stats", help="print dataset statistics as JSON")
    stats.add_argument("spec", help="a dataset folder, 'source:folder', or 'synthetic[:key=value,...]'")
    stats.set_defaults(handler=_data_stats)
    download = data_commands.add_parser("download", help="download raw public datasets (needs internet)")
    download.add_argument("dataset", choices=("amazon2014", "movielens"))
    download.add_argument("--category", default="Beauty", help="Amazon 2014 category, e.g. Beauty, "
                          "Sports_and_Outdoors, Toys_and_Games")
    download.add_argument("--variant", default="ml-1m", choices=("ml-1m", "ml-100k"))
    download.add_argument("--out", required=True, help="folder to write the files to")
    download.add_argument("--base-url", default=None, help="mirror to download from instead of the official site")
    download.set_defaults(handler=_data_download)
    tfds_build = data_commands.add_parser("tfds-build", help="write a source as a TFDS ArrayRecord dataset")
    tfds_build.add_argument("config", help="builder config: beauty_p5, sports_p5, toys_p5, amazon2014_<category>, "
                            "movielens_1m, movielens_100k, synthetic")
    tfds_build.add_argument("--data-dir", required=True, help="TFDS data_dir to write to")
    tfds_build.add_argument("--manual-dir", default=None, help="folder holding the user-downloaded files")
    tfds_build.set_defaults(handler=_data_tfds_build)

    run = commands.add_parser("run", help="run a configured pipeline; extra --config.a.b=value override fields")
    run.add_argument("--config", required=True, help="path to a configs/<name>.py file")
    run.add_argument("--workdir", required=True, help="run directory (metrics.json, config.json, ...)")
    run.set_defaults(handler=_run)

    for name, help_text, handler in (
            ("embed", "encode the catalogue's item texts: <workdir>/embeddings.npy + embeddings.json", _embed),
            ("sid", "embed -> quantize -> SID table: <workdir>/sid_table.npz + sid_diagnostics.json", _sid)):
        stage = commands.add_parser(name, help=help_text + "; extra --config.a.b=value override fields")
        stage.add_argument("--config", required=True, help="path to a configs/sid_<name>.py file (data + sid groups)")
        stage.add_argument("--workdir", required=True, help="folder for the artifacts")
        stage.add_argument("--force", action="store_true", help="rebuild artifacts that exist with other inputs")
        stage.set_defaults(handler=handler)

    predict = commands.add_parser("predict", help="recommendations of a finished run for given histories "
                                  "(JSON lines: item ids, raw ids, titles)")
    predict.add_argument("--workdir", required=True, help="a `jaxrec run` directory")
    predict.add_argument("--model", default=None, help="model name in the run's config (default: its only "
                         "trained model, or its only model)")
    predict.add_argument("--k", type=int, default=10, help="recommendations per history (>= 1)")
    predict.add_argument("--raw-ids", action="store_true", help="histories are raw ids (e.g. ASINs), not 1..N")
    given = predict.add_mutually_exclusive_group(required=True)
    given.add_argument("--history", action="append", help="one history, item ids oldest first (repeatable)")
    given.add_argument("--histories", help="a file with one history per line")
    predict.set_defaults(handler=_predict)

    report = commands.add_parser("report", help="a sweep's results.jsonl -> seed-aggregated tables, scaling-law "
                                 "fits, PNG plots, report.md and fit.json")
    report.add_argument("--workdir", required=True, help="the sweep directory holding results.jsonl")
    report.add_argument("--metric", default="test/recall@10", help="metric to fit ('<stage>/<name>'); its "
                        "recall/ndcg partner is fitted and plotted too")
    report.add_argument("--out", default=None, help="output folder (default <workdir>/report)")
    report.add_argument("--bootstrap", type=int, default=200, help="bootstrap resamples for the intervals")
    report.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    report.add_argument("--huber-delta", type=float, default=1e-3, help="Huber loss delta (metric scale)")
    report.add_argument("--fix", action="append", metavar="NAME=VALUE", help="hold a law parameter fixed in "
                        "every form that has it, e.g. --fix gamma1=0.02 or --fix B=0 (repeatable)")
    report.add_argument("--dataset", default=None, help="dataset name for the paper comparison (default: "
                        "detected from the rows' config)")
    report.set_defaults(handler=_report)
    sweep = commands.add_parser("sweep", help="run a sweep's points (or write their commands) and collect the "
                                "results table; extra --config.a.b=value apply to every point, --sweep.name=value "
                                "set the sweep file's parameters")
    sweep.add_argument("--sweep", required=True, help="path to an experiments/<name>.py sweep file")
    sweep.add_argument("--workdir", required=True, help="sweep directory: one folder per point, results.jsonl/csv")
    sweep.add_argument("--parallel", type=int, default=1, help="points run at a time (default 1)")
    sweep.add_argument("--only", default=None, help="run only the points whose id matches this regular expression")
    sweep.add_argument("--collect", action="store_true", help="only rebuild DIR/results.jsonl and results.csv from "
                       "the point directories (after a scheduler ran the emitted commands); runs nothing")
    sweep.add_argument("--dry-run", action="store_true", help="list the points, their status and command; run "
                       "nothing")
    sweep.add_argument("--emit-commands", default=None, metavar="FILE",
                       help="write one shell command per unfinished point to FILE ('-': stdout) instead of running")
    sweep.add_argument("--hosts", type=int, default=1, help="with --emit-commands: processes (hosts) per point; "
                       "> 1 adds the distributed settings")
    sweep.add_argument("--rerun-changed", action="store_true", help="move point directories holding a run of "
                       "another config to <workdir>/.stale/ and run them again (default: stop with an error)")
    sweep.set_defaults(handler=_sweep)
    return parser


def _data_stats(args: argparse.Namespace, extra: list[str]) -> int:
    from jaxrec.data.sources import load_spec

    print(json.dumps(load_spec(args.spec).stats(), indent=2, default=str))
    return 0


def _data_download(args: argparse.Namespace, extra: list[str]) -> int:
    from jaxrec.data import download

    kwargs = {} if args.base_url is None else {"base_url": args.base_url}
    if args.dataset == "amazon2014":
        paths = download.download_amazon2014(args.category, args.out, **kwargs)
    else:
        paths = download.download_movielens(args.variant, args.out, **kwargs)
    for path in paths:
        print(path)
    return 0


def _data_tfds_build(args: argparse.Namespace, extra: list[str]) -> int:
    from jaxrec.data import tfds_builders

    print(tfds_builders.build(args.config, args.data_dir, args.manual_dir))
    return 0


def _run(args: argparse.Namespace, extra: list[str]) -> int:
    from jaxrec.config import load_config
    from jaxrec.pipeline import run

    run(load_config(args.config, extra), args.workdir)
    return 0


def _sid_inputs(args: argparse.Namespace, extra: list[str]):
    from jaxrec.config import ConfigError, load_config
    from jaxrec.data.sources import load_configured

    config = load_config(args.config, extra)
    if "sid" not in config:
        raise ConfigError(f"{args.config}: no 'sid' group (see configs/sid_beauty.py)")
    data = config.data
    dataset = load_configured(data)
    return config, dataset.catalog


def _embed(args: argparse.Namespace, extra: list[str]) -> int:
    from pathlib import Path

    from jaxrec.sid.build import embed_stage

    config, catalog = _sid_inputs(args, extra)
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    embed_stage(config.sid, catalog, workdir, force=args.force)
    print(workdir / "embeddings.npy")
    return 0


def _sid(args: argparse.Namespace, extra: list[str]) -> int:
    from pathlib import Path

    from jaxrec.sid.build import DIAGNOSTICS_FILE, build_sid

    config, catalog = _sid_inputs(args, extra)
    build_sid(config.sid, catalog, args.workdir, force=args.force)
    print(Path(args.workdir) / DIAGNOSTICS_FILE)
    return 0


def _predict(args: argparse.Namespace, extra: list[str]) -> int:
    from pathlib import Path

    from jaxrec.predict import predict

    if args.histories:
        lines, source = Path(args.histories).read_text().splitlines(), args.histories
    else:
        lines, source = args.history, "--history"
    for answer in predict(args.workdir, lines, model=args.model, k=args.k, use_raw_ids=args.raw_ids, source=source):
        print(json.dumps(answer))
    return 0


def _report(args: argparse.Namespace, extra: list[str]) -> int:
    from jaxrec.scaling.report import parse_fixed, write_report

    path = write_report(args.workdir, args.out, metric=args.metric, n_bootstrap=args.bootstrap, seed=args.seed,
                        huber_delta=args.huber_delta, fixed=parse_fixed(args.fix), dataset=args.dataset)
    print(path)
    return 0


def _sweep(args: argparse.Namespace, extra: list[str]) -> int:
    from jaxrec.config import ConfigError
    from jaxrec.sweep.launcher import Options, sweep_main

    if args.parallel < 1 or args.hosts < 1:
        raise ConfigError("--parallel and --hosts must be >= 1")
    if args.hosts > 1 and not args.emit_commands:
        raise ConfigError("--hosts applies to --emit-commands (multi-host points run under a scheduler)")
    if sum(map(bool, (args.collect, args.dry_run, args.emit_commands))) > 1:
        raise ConfigError("--collect, --dry-run and --emit-commands are alternatives: give one")
    options = Options(parallel=args.parallel, only=args.only, dry_run=args.dry_run, collect=args.collect,
                      emit_commands=args.emit_commands, hosts=args.hosts, rerun_changed=args.rerun_changed)
    return sweep_main(args.sweep, args.workdir, extra, options)


if __name__ == "__main__":
    sys.exit(main())
