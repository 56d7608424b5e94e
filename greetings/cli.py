"""The `greetings` command: run the local stack, render locally, and act as an end user.

End-user commands (submit, jobs, watch, cancel, retry) sign in on the local stack's Auth emulator
as a stable local user (`--user EMAIL` for another), or, with GREETINGS_ID_TOKEN set, act in
production with that Firebase ID token: see greetings/client/session.py.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from greetings.settings import get_settings


def _stack(args: argparse.Namespace) -> int:
    from greetings.stack.manager import Stack

    stack = Stack(get_settings())
    if args.action == "up":
        stack.up()
        return 0
    if args.action == "down":
        stack.down()
        return 0
    return 0 if stack.status() else 1


def _render(args: argparse.Namespace) -> int:
    from greetings.commands.render import render_command

    return render_command(args)


def _submit(args: argparse.Namespace) -> int:
    from greetings.commands.submit import submit_command

    return submit_command(args)


def _jobs(args: argparse.Namespace) -> int:
    from greetings.commands.jobs import jobs_command

    return jobs_command(args)


def _watch(args: argparse.Namespace) -> int:
    from greetings.commands.watch import watch_command

    return watch_command(args)


def _cancel(args: argparse.Namespace) -> int:
    from greetings.commands.jobs import cancel_command

    return cancel_command(args)


def _retry(args: argparse.Namespace) -> int:
    from greetings.commands.jobs import retry_command

    return retry_command(args)


def _preview(args: argparse.Namespace) -> int:
    from greetings.commands.preview import preview_command

    return preview_command(args)


def _export(args: argparse.Namespace) -> int:
    from greetings.commands.export import export_command

    return export_command(args)


def _demo(args: argparse.Namespace) -> int:
    from greetings.commands.demo import demo_command

    return demo_command(args)


def _bench(args: argparse.Namespace) -> int:
    from greetings.bench import bench_command

    return bench_command(args)


def _add_user(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--user",
        metavar="EMAIL",
        default=None,
        help="local stack only: act as this user (created on first use; "
        "default local-user@greetings.test)",
    )


def _add_job_options(parser: argparse.ArgumentParser) -> None:
    """What every job of a submission shares: the voice, the greeting and what follows it."""
    parser.add_argument(
        "--voice",
        metavar="VOICE_ID",
        default=None,
        help="ElevenLabs voice id (required when ElevenLabs is configured), clone, piper:joe or "
        "espeak:<voice>; default piper:joe without ElevenLabs",
    )
    parser.add_argument(
        "--greeting-end",
        type=seconds_or_auto,
        default=1.5,
        metavar="SECONDS|auto",
        help="where the video's own greeting ends (default 1.5); auto: found from the recording",
    )
    parser.add_argument(
        "--greeting-text",
        default=None,
        metavar="TEXT",
        help='what to say, default "Hey {firstName},"; also {lastName} and {name}',
    )
    parser.add_argument(
        "--following-text",
        default=None,
        metavar="TEXT",
        help="the words you say right after the greeting in the video (at most 200 characters), "
        "so the new greeting leads into them; never spoken itself",
    )


def _add_end_user_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    submit = commands.add_parser(
        "submit",
        help="upload a video and create one personalized-video job per prospect",
        description="Upload VIDEO (once: the same file is never uploaded twice) and create one "
        "job per prospect name. Exit 0 when every job completed, 1 when any failed or was "
        "cancelled, 2 on bad arguments or input.",
    )
    submit.add_argument("video", metavar="VIDEO", help="the recorded video (its greeting first)")
    who = submit.add_mutually_exclusive_group(required=True)
    who.add_argument(
        "--name", action="append", metavar="NAME", help="a prospect's name (repeat for more)"
    )
    who.add_argument(
        "--names-csv",
        metavar="FILE",
        help="a CSV with a `name` (or `prospectName`) column; optional `firstName` and "
        "`pronunciation` columns",
    )
    _add_job_options(submit)
    page = submit.add_argument_group("the share page each video gets")
    page.add_argument("--sender-name", metavar="NAME", help='shown as "A video from NAME"')
    page.add_argument("--cta-url", metavar="URL", help="an https link: the page's one button")
    page.add_argument(
        "--cta-text", metavar="TEXT", help='the button\'s words (default "Learn more")'
    )
    submit.add_argument(
        "--wait", action="store_true", help="follow the jobs live and download the videos"
    )
    submit.add_argument(
        "--yes",
        action="store_true",
        help="create the videos even where the fit check says a name does not fit (without a "
        "terminal to ask, nothing is created otherwise)",
    )
    submit.add_argument(
        "--no-fit-check",
        action="store_true",
        help="create the jobs at once, without first checking that every name fits the greeting",
    )
    submit.add_argument(
        "--out", default="out", metavar="DIR", help="with --wait: where videos go (default ./out)"
    )
    submit.add_argument(
        "--json",
        action="store_true",
        help="one JSON line per job on stdout: when it ends (with --wait) or is created",
    )
    _add_user(submit)
    submit.set_defaults(handler=_submit)

    preview = commands.add_parser(
        "preview",
        help="render one prospect's video and save it, to hear it before sending a batch",
        description="Upload VIDEO (once) and render it for one name, as `submit --wait` does, "
        "marked as a preview. The batch sent afterwards with the same voice and greeting text "
        "reuses the preview's speech.",
    )
    preview.add_argument("video", metavar="VIDEO", help="the recorded video (its greeting first)")
    preview.add_argument("--name", action="append", required=True, metavar="NAME")
    preview.add_argument(
        "--pronunciation", default=None, metavar="TEXT", help='how to say it, e.g. "Sheh-VAWN"'
    )
    _add_job_options(preview)
    _add_user(preview)
    preview.add_argument(
        "--out", default="out/preview", metavar="DIR", help="where the video goes (out/preview)"
    )
    preview.set_defaults(handler=_preview)

    export = commands.add_parser(
        "export",
        help="my batch's results as CSV, for an outreach tool",
        description="Write the CSV the batch was made from, row for row with its columns, plus "
        "status, videoLink, thumbnailUrl (poster JPEG), gifUrl (animated GIF with the first "
        "name) and error. `submit` prints each batch's id.",
    )
    export.add_argument("batch_ids", nargs="+", metavar="BATCH_ID")
    export.add_argument(
        "--from",
        dest="source",
        metavar="CSV",
        help="the CSV given to submit: its rows and columns are kept (without it: one row per job)",
    )
    export.add_argument("--csv", default="-", metavar="OUT", help="where to write (default stdout)")
    _add_user(export)
    export.set_defaults(handler=_export)

    jobs = commands.add_parser("jobs", help="list my jobs, newest first")
    jobs.add_argument("--json", action="store_true", help="one JSON line per job")
    _add_user(jobs)
    jobs.set_defaults(handler=_jobs)

    watch = commands.add_parser(
        "watch",
        help="follow jobs live until they end (all my unfinished jobs when none is given)",
    )
    watch.add_argument("job_ids", nargs="*", metavar="JOB_ID")
    watch.add_argument(
        "--out", default=None, metavar="DIR", help="download completed videos to DIR"
    )
    watch.add_argument(
        "--json", action="store_true", help="one JSON line per job on stdout when it ends"
    )
    _add_user(watch)
    watch.set_defaults(handler=_watch)

    for name, handler, what in (
        ("cancel", _cancel, "ask to cancel a job that has not finished"),
        ("retry", _retry, "ask to retry a failed job"),
    ):
        command = commands.add_parser(name, help=what)
        command.add_argument("job_id", metavar="JOB_ID")
        if name == "retry":  # edit and retry: the new attempt runs with these changed
            command.add_argument(
                "--greeting-end",
                type=float,
                default=None,
                metavar="SECONDS",
                help="where the greeting ends in the video",
            )
            command.add_argument("--greeting-text", default=None, metavar="TEXT")
            command.add_argument(
                "--first-name", default=None, metavar="NAME", help="what to call the prospect"
            )
            command.add_argument(
                "--pronunciation", default=None, metavar="SPELLING", help="how to say the name"
            )
        _add_user(command)
        command.set_defaults(handler=handler)

    demo = commands.add_parser(
        "demo",
        help="start the stack and personalize a sample video for three prospects (make demo)",
    )
    demo.add_argument("--video", default=None, metavar="PATH", help="your own video instead")
    demo.add_argument(
        "--names-csv", default=None, metavar="FILE", help="prospects from a CSV instead"
    )
    demo.add_argument(
        "--voice", default=None, metavar="VOICE_ID", help="needed when ElevenLabs is configured"
    )
    demo.set_defaults(handler=_demo)


def seconds_or_auto(value: str) -> float | None:
    """`--greeting-end`: seconds, or `auto` (None: the worker finds it from the recording)."""
    if value.strip().lower() == "auto":
        return None
    try:
        return float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is neither seconds nor auto") from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="greetings",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="production: set GREETINGS_ID_TOKEN to your Firebase ID token (what the web\n"
        "app's getIdToken() returns; it lasts an hour) and GREETINGS_PROJECT_ID to the\n"
        "project: submit, jobs, watch, cancel and retry then act as you, under the rules.",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    stack = commands.add_parser("stack", help="start, stop or inspect the local stack")
    stack.add_argument("action", choices=["up", "down", "status"])
    stack.set_defaults(handler=_stack)

    render = commands.add_parser(
        "render", help="render one personalized video from local files, without the stack"
    )
    render.add_argument("video", help="the recorded video")
    render.add_argument("--name", required=True, help="the prospect's name")
    render.add_argument("--out", required=True, help="where to write the MP4")
    render.add_argument(
        "--greeting-end",
        type=seconds_or_auto,
        default=1.5,
        metavar="SECONDS|auto",
        help="seconds of the original greeting to replace (default 1.5); auto: found from it",
    )
    render.add_argument(
        "--voice", default="default", help="voice id (ElevenLabs, piper:joe or espeak:<voice>)"
    )
    render.add_argument("--greeting-text", default=None, help='template, default "Hey {name},"')
    render.set_defaults(handler=_render)

    _add_end_user_commands(commands)

    bench = commands.add_parser(
        "bench",
        help="measure render speed, job latency and throughput on this machine (takes minutes)",
        description="Prints figures beside their goals; nothing is asserted. The job sections "
        "need the local stack (`greetings stack up`). See docs/benchmarks.md.",
    )
    bench.add_argument("--json", action="store_true", help="one JSON object on stdout")
    bench.add_argument(
        "--only",
        metavar="SECTIONS",
        default=None,
        help="comma-separated: render, latency, throughput (default all)",
    )
    bench.add_argument(
        "--jobs", type=int, default=100, metavar="N", help="throughput batch size (default 100)"
    )
    bench.add_argument(
        "--compare",
        metavar="REF",
        default=None,
        help="run the throughput batch with the worker of commit REF first, then with this "
        "checkout's, and print the two side by side",
    )
    bench.add_argument(
        "--warmup",
        type=int,
        default=None,
        metavar="N",
        help="jobs of another user run and left out before the throughput batch (default 6; "
        "0: none, a first batch after `stack up` then pays the stack's warm-up)",
    )
    bench.add_argument(
        "--latency-jobs",
        type=int,
        default=20,
        metavar="N",
        help="jobs run one at a time for latency (default 20)",
    )
    bench.add_argument(
        "--runs", type=int, default=5, metavar="N", help="runs per render figure (default 5)"
    )
    bench.set_defaults(handler=_bench)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    import requests

    from greetings.client.enduser import Denied
    from greetings.errors import CliError
    from greetings.stack.manager import StackError

    args = build_parser().parse_args(argv)
    try:
        code: int = args.handler(args)
    except (StackError, CliError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code if isinstance(exc, CliError) else 1
    except Denied as exc:
        if exc.status == 401:
            print(
                "error: Firestore refused the ID token (expired? it lasts an hour): put a fresh "
                "one in GREETINGS_ID_TOKEN",
                file=sys.stderr,
            )
        else:
            first_line = (str(exc).strip().splitlines() or ["?"])[0]
            print(f"error: Firestore refused the request: {first_line}", file=sys.stderr)
        return 1
    except requests.ConnectionError as exc:
        url = getattr(exc.request, "url", None) or "the server"
        url = url.decode() if isinstance(url, bytes) else str(url)
        print(
            f"error: no connection to {url}: if that is the local stack, run "
            "`uv run greetings stack up` (or `make demo`)",
            file=sys.stderr,
        )
        return 1
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
