"""`gpuctl chat`: interactive, one-shot and piped chat over the routed providers."""

from __future__ import annotations

from pathlib import Path

import typer

from gpuctl.cli.context import app_context
from gpuctl.errors import NotAvailableError


def chat(
    ctx: typer.Context,
    prompt: str = typer.Argument(None, help="Ask once and exit (default: interactive)."),
    file: Path = typer.Option(None, "--file", "-f", help="Read the prompt from a file."),
    system: str = typer.Option(None, "--system", help="System prompt."),
    provider: str = typer.Option(None, "--provider", help="Force a provider (modal, vastai, anthropic, endpoint)."),
    temperature: float = typer.Option(None, "--temperature", help="Sampling temperature."),
    max_tokens: int = typer.Option(None, "--max-tokens", help="Maximum tokens in the answer."),
    no_stream: bool = typer.Option(False, "--no-stream", help="Wait for the whole answer."),
    continue_: bool = typer.Option(False, "--continue", "-c", help="Resume the last conversation."),
    conversation: int = typer.Option(None, "--conversation", help="Resume conversation ID."),
) -> None:
    """Chat with the best available provider.

    Example: gpuctl chat "What is vLLM?"
    """
    app_context(ctx)
    raise NotAvailableError("`gpuctl chat` is not available yet (issue 5)")
