"""Entry point: builds the typer app and turns ragkit errors into one-line messages."""

from __future__ import annotations

from typing import Annotated

import typer

from ragkit.cli import ask_command, encoder_commands, eval_command, index_commands, train_command
from ragkit.cli.console import err, setup_logging

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
app.command("train", rich_help_panel="Training")(train_command.train_command)
app.command("index", rich_help_panel="Index")(index_commands.index_command)
app.command("status", rich_help_panel="Index")(index_commands.status_command)
app.command("remove", rich_help_panel="Index")(index_commands.remove_command)
app.command("ask", rich_help_panel="Index")(ask_command.ask_command)
app.command("eval", rich_help_panel="Evaluation")(eval_command.eval_command)


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


def main() -> None:
    """Console-script entry: user errors print one line and exit 1, bugs keep tracebacks."""
    import sys

    from ragkit.cli.options import ray_flag_values
    from ragkit.errors import RagkitError

    try:
        args = ray_flag_values(ask_command.answer_flag_values(sys.argv[1:]))
        app(args=args, prog_name="ragkit")
    except RagkitError as exc:
        err.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        raise SystemExit(1) from None
    except KeyboardInterrupt:
        err.print("[yellow]interrupted[/]")
        raise SystemExit(130) from None


if __name__ == "__main__":
    main()
