"""Entry point: builds the typer app and turns ragkit errors into one-line messages."""

from __future__ import annotations

import sqlite3
from typing import Annotated

import typer

from ragkit.cli import (
    ask_command,
    encoder_commands,
    eval_command,
    index_commands,
    serve_command,
    train_command,
)
from ragkit.cli.console import err, quiet_dependencies, safe, setup_logging

app = typer.Typer(
    name="ragkit",
    help="Turn a decoder-only LLM into a bidirectional text encoder (LLM2Vec) and retrieve with it.",
    no_args_is_help=True,
    rich_markup_mode="markdown",
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.command(rich_help_panel="Encoder")(encoder_commands.info)
app.command(rich_help_panel="Encoder")(encoder_commands.embed)
app.command(rich_help_panel="Encoder")(encoder_commands.export)
app.command("train", rich_help_panel="Training")(train_command.train_command)
app.command("index", rich_help_panel="Index")(index_commands.index_command)
app.command("status", rich_help_panel="Index")(index_commands.status_command)
app.command("remove", rich_help_panel="Index")(index_commands.remove_command)
app.command("ask", rich_help_panel="Index")(ask_command.ask_command)
app.command("eval", rich_help_panel="Evaluation")(eval_command.eval_command)
app.command("serve", rich_help_panel="Index")(serve_command.serve_command)


def _version(value: bool) -> None:
    if value:
        from ragkit import __version__

        typer.echo(f"ragkit {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show debug messages.")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")
    ] = False,
) -> None:
    """ragkit: LLM2Vec encoders and retrieval from the terminal."""
    setup_logging(verbose)
    quiet_dependencies()


def _error_line(message: str, as_json: bool = False) -> None:
    """One ``error:`` line on stderr (and, for ``--json`` commands, ``{"error": ...}`` on stdout)."""
    import json
    import sys

    err.print(f"[bold red]error:[/] {safe(message)}", highlight=False, soft_wrap=True)
    if as_json:
        sys.stdout.write(json.dumps({"error": message}, ensure_ascii=True) + "\n")
    raise SystemExit(1) from None


def _database_message(exc: Exception) -> str:
    """A SQLite failure in words a user can act on; what was committed before it is intact."""
    from ragkit.indexer.store import DAMAGED_HINT

    text = str(exc)
    if "malformed" in text or "not a database" in text:
        return f"the index database is damaged ({text}); {DAMAGED_HINT}"
    if "full" in text or "I/O" in text or "too big" in text or "readonly" in text:
        return (
            f"could not write the index ({text}); free space or fix permissions and rerun: what "
            "was stored before is intact"
        )
    return f"the index database failed ({text})"


def main() -> None:
    """Console-script entry: user errors print one line and exit 1, bugs keep tracebacks."""
    import sys

    from ragkit.cli.options import ray_flag_values
    from ragkit.errors import RagkitError

    usage_error = typer.BadParameter.__mro__[1]  # click's UsageError, as this typer ships it
    as_json = "--json" in sys.argv[1:]
    try:
        args = ray_flag_values(ask_command.answer_flag_values(sys.argv[1:]))
        code = app(args=args, prog_name="ragkit", standalone_mode=False)
    except usage_error as exc:
        where = f"ragkit {exc.ctx.command_path.split(' ', 1)[-1]} --help" if exc.ctx else "ragkit --help"
        _error_line(f"{exc.format_message()} (see `{where}`)", as_json)
    except RagkitError as exc:
        _error_line(str(exc), as_json)
    except sqlite3.DatabaseError as exc:
        _error_line(_database_message(exc), as_json)
    except PermissionError as exc:
        _error_line(
            f"permission denied: {exc.filename or exc}; check who owns it, or use another folder", as_json
        )
    except (KeyboardInterrupt, typer.Abort):
        err.print("[yellow]interrupted[/]")
        raise SystemExit(130) from None
    if isinstance(code, int) and code:
        raise SystemExit(code)


if __name__ == "__main__":
    main()
