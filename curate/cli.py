"""Command line: parse arguments, call the API, map errors to exit codes.

Exit codes: 0 ok, 1 a stage failed (the message says how to resume), 2 bad input (config, files),
130 interrupted. Errors are printed as messages, never tracebacks (``--debug`` shows them).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import shlex
import sys
from pathlib import Path

from curate import __version__, machine
from curate.errors import CurateError

log = logging.getLogger("curate")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="curate", description="Build ImageNet-style image datasets end to end.")
    parser.add_argument("--version", action="version", version=f"curate {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run (or resume) a pipeline")
    run.add_argument("pipeline", type=Path, help="pipeline YAML file")
    run.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                     help="override a config value, e.g. --set annotate.votes_per_image=5 (repeatable)")
    group = run.add_mutually_exclusive_group()
    group.add_argument("--only", action="append", metavar="STAGE", help="run only this stage (repeatable)")
    group.add_argument("--from", dest="start", metavar="STAGE", help="run this stage and the ones after it")
    run.add_argument("--run-dir", type=Path, help="override run.dir")
    run.add_argument("--force", action="store_true",
                     help="re-run the selected stages even when their inputs did not change (paid work such as "
                          "downloads and votes is still never repeated)")
    run.add_argument("--allow-partial", action="store_true",
                     help="when the crowd still owes votes, run the later stages on the labels complete so far")
    run.add_argument("--no-progress", action="store_true", help="hide progress bars")
    run.add_argument("-q", "--quiet", action="store_true", help="only warnings and the summary")

    status = sub.add_parser("status", help="per-stage and per-class counts of a run")
    status.add_argument("run_dir", type=Path)

    report = sub.add_parser("report", help="where a run's noise report is, and what it found")
    report.add_argument("run_dir", type=Path)
    report.add_argument("--open", dest="open_browser", action="store_true", help="open it in the default browser")

    validate = sub.add_parser("validate", help="check a pipeline file without running it")
    validate.add_argument("pipeline", type=Path)
    validate.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")

    audit = sub.add_parser("audit", help="find the wrong labels of a dataset you already have (no WordNet, no crowd)")
    audit.add_argument("path", type=Path, help="an ImageFolder tree (<label>/<image>) or a CSV/TSV/Parquet table "
                                               "with columns path, label")
    audit.add_argument("--out", type=Path, required=True,
                       help="folder of the audit: pipeline.yaml, report/, the run's catalog and image store")
    audit.add_argument("--backbone", help="embedding backbone, as noise.backbone (default resnet50)")
    audit.add_argument("--weights", help="imagenet | a state_dict file, as noise.weights (default imagenet; none is "
                                         "refused: an untrained backbone cannot judge labels)")
    audit.add_argument("--device", choices=["auto", "cpu", "cuda"], help="default auto")
    audit.add_argument("--batch-size", type=int, help="images per embedding batch (default 32)")
    audit.add_argument("--root", type=Path, help="for a table: the folder its files lie in (default: its folder)")
    audit.add_argument("--clean-copy", action="store_true",
                       help="also write the dataset without the flagged images to OUT/export/ (ImageFolder layout)")
    audit.add_argument("--no-follow-symlinks", dest="follow_symlinks", action="store_false",
                       help="skip files and class folders that are links leading outside PATH (followed by default)")
    audit.add_argument("--no-progress", action="store_true", help="hide progress bars")
    audit.add_argument("-q", "--quiet", action="store_true", help="only warnings and the summary")

    sub.add_parser("doctor", help="report WordNet, torch, device, weights and Label Studio status")
    setup = sub.add_parser("setup", help="install WordNet 3.0 data where nltk finds it")
    setup.add_argument("--target", type=Path, help="nltk data folder (default: inside the environment)")
    setup.add_argument("--no-download", action="store_true", help="skip nltk's downloader (offline)")
    sub.add_parser("stages", help="list the pipeline's stages")
    labelstudio = sub.add_parser("labelstudio", help="a Label Studio server where annotators answer (make labelstudio)")
    ls_sub = labelstudio.add_subparsers(dest="labelstudio_command", required=True)
    serve = ls_sub.add_parser("serve", help="start Label Studio for a run; print the annotators' URL and invite link")
    serve.add_argument("run_dir", type=Path)
    serve.add_argument("--host", default="127.0.0.1",
                       help="address to listen on (default 127.0.0.1: this machine only)")
    serve.add_argument("--port", type=int, default=8080, help="refused when busy (default 8080)")
    serve.add_argument("--annotator", dest="annotators", action="append", default=[], metavar="EMAIL",
                       help="only this email may sign up and annotate (repeatable; default: anyone with the "
                            "invite link)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except CurateError as exc:
        if args.debug:
            log.exception("error")
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except BrokenPipeError:  # the reader went away (`curate report RUN | head`): stop quietly, as Unix tools do
        with contextlib.suppress(OSError, ValueError):  # nothing more reaches the closed pipe at exit
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except Exception as exc:  # a bug: say so plainly; the log file (and --debug) keep the traceback
        log.debug("unexpected error", exc_info=True)
        if args.debug:
            raise
        if (trouble := machine.problem(exc)) is not None:  # a full disk, no memory: not a bug of curate
            print(f"error: {trouble[0]}; {trouble[1]} and run the command again", file=sys.stderr)
            return 1
        print(f"internal error: {type(exc).__name__}: {exc} (run with --debug for the traceback)", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ninterrupted: everything finished so far is saved; run the same command again to resume.",
              file=sys.stderr)
        return 130


def cmd_run(args: argparse.Namespace) -> int:
    from curate.config import load_config
    from curate.runner import open_run, run_pipeline
    from curate.stages import STAGES
    from curate.summary import print_run_summary

    config = load_config(args.pipeline, args.overrides, run_dir=args.run_dir)
    resume = " ".join(["curate", "run", shlex.quote(str(args.pipeline))]
                      + [f"--set {shlex.quote(o)}" for o in args.overrides]
                      + ([f"--run-dir {shlex.quote(str(args.run_dir))}"] if args.run_dir else []))
    progress = not args.no_progress and sys.stderr.isatty()
    with open_run(config, progress=progress, resume_command=resume, allow_partial=args.allow_partial,
                  quiet=args.quiet) as ctx:
        summary = run_pipeline(ctx, STAGES, only=args.only, start=args.start, force=args.force)
        print_run_summary(summary, resume)
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from curate.summary import print_status

    return print_status(args.run_dir)


def cmd_report(args: argparse.Namespace) -> int:
    from curate.report.summary import print_report

    return print_report(args.run_dir, open_browser=args.open_browser)


def cmd_validate(args: argparse.Namespace) -> int:
    from curate.config import load_config

    config = load_config(args.pipeline, args.overrides)
    print(f"{args.pipeline}: ok (run dir {config.run.dir})")
    return 0


def cmd_audit(args: argparse.Namespace) -> int:
    from curate.audit import AuditOptions, audit

    options = AuditOptions(path=args.path, out=args.out, backbone=args.backbone, weights=args.weights,
                           device=args.device, batch_size=args.batch_size, root=args.root,
                           clean_copy=args.clean_copy, follow_symlinks=args.follow_symlinks)
    result = audit(options, progress=not args.no_progress and sys.stderr.isatty(), quiet=args.quiet)
    rate = "-" if result.noise_rate is None else f"{result.noise_rate:.1%}"
    print(f"\naudit of {args.path}: {result.images} images, {result.classes} classes, {result.flagged} flagged, "
          f"estimated noise rate {rate}")
    if result.skipped:
        print("  skipped:      " + ", ".join(f"{n} {status}" for status, n in result.skipped.items())
              + f" (reasons: curate status {shlex.quote(str(args.out))})")
    if result.report.is_file():
        print(f"  report:       {result.report}\n  label issues: {result.label_issues}")
    else:
        print("  no report: the noise stage needs two classes with enough images (see the log)")
    if result.exported:
        print(f"  clean copy:   {result.layout.export}")
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    from curate.doctor import run_doctor

    return run_doctor()


def cmd_setup(args: argparse.Namespace) -> int:
    from curate.runner import setup_logging
    from curate.wordnet_data import ensure_wordnet

    setup_logging(None)
    info = ensure_wordnet(args.target, use_downloader=not args.no_download)
    print(f"WordNet {info.version} ready at {info.path}")
    return 0


def cmd_stages(args: argparse.Namespace) -> int:
    from curate.stages import STAGES

    for name, description in STAGES.describe():
        print(f"{name:<11} {description}")
    return 0


def cmd_labelstudio(args: argparse.Namespace) -> int:
    from curate.labelstudio.server import serve

    return serve(args.run_dir, host=args.host, port=args.port, annotators=args.annotators)


COMMANDS = {"run": cmd_run, "status": cmd_status, "report": cmd_report, "validate": cmd_validate, "doctor": cmd_doctor,
            "setup": cmd_setup, "stages": cmd_stages, "labelstudio": cmd_labelstudio, "audit": cmd_audit}

if __name__ == "__main__":
    sys.exit(main())
