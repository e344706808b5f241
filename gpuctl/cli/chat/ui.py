"""The two chat UIs and the lines around an answer: what `gpuctl chat` shows, and where.

Owns: `HumanUI` (the answer on stdout, as raw text or Markdown by block in a terminal; people's
notes, the stats line and fallbacks on stderr), `JsonUI` (NDJSON on stdout: chunks, then a
summary or an error per answer), and the stats, fallback and /cost lines they print. Costs
arrive computed (the router's estimate, the session's sums); here they are only shown.

Must not: read input, touch the database or the network, or compute a price.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape

from gpuctl.cli.chat.render import StreamRenderer, WaitIndicator
from gpuctl.costs.money import approx_money as money
from gpuctl.errors import EXIT_INTERRUPTED, GpuctlError

if TYPE_CHECKING:
    from gpuctl.chat.session import Answer, Spend
    from gpuctl.cli.output import Output
    from gpuctl.routing.outcomes import Fallback


def fallback_lines(fallback: Fallback | None) -> list[str]:
    """One 'fell back from modal: waking up (…)' line per provider that did not answer."""
    if fallback is None:
        return []
    return [f"fell back from {a.provider}: {a.reason.text}" for a in fallback.attempts]


def stats_line(answer: Answer) -> str:
    parts = [answer.provider or "?"]
    if answer.model:
        parts.append(answer.model)
    if answer.usage is not None and answer.usage.total_tokens:
        usage = answer.usage
        if usage.estimated:  # the server sent no usage: our count, marked as such
            parts.append(f"~{usage.prompt_tokens} in / ~{usage.completion_tokens} out tokens (estimated)")
        else:
            parts.append(f"{usage.prompt_tokens} in / {usage.completion_tokens} out tokens")
    speed = answer.tokens_per_s
    if speed is not None:
        parts.append(f"{speed:.1f} tok/s")
    if answer.ttft_s is not None:
        parts.append(f"TTFT {answer.ttft_s:.2f} s")
    if answer.cost is None and answer.provider == "vastai":
        parts.append("billed by instance time (gpuctl cost report)")
    else:
        parts.append(money(answer.cost))
    if answer.partial:
        parts.append("partial answer kept")
    return " · ".join(parts)


def tool_call_lines(answer: Answer) -> list[str]:
    """One 'tool call: get_weather({"city": "Paris"})' line per call the model asked for."""
    return [f"tool call: {c.name}({c.arguments})" for c in answer.tool_calls]


def cost_line(spend: dict[str, Spend], total: Spend) -> str:
    """/cost: this session's estimated spend, in total and per provider."""
    if not total.answers:
        return "Session spend: $0.00 (no answers yet)"
    shown = "$0.00" if total.cost == 0 and not total.unpriced else money(total.cost) if total.cost else "cost n/a"
    per = []
    for name, part in sorted(spend.items()):
        what = f"{part.answers} answer{'s' if part.answers != 1 else ''}, " \
               f"{part.prompt_tokens} in / {part.completion_tokens} out tokens, "
        what += money(part.cost) if not part.unpriced else (
            "cost n/a" if not part.cost else f"{money(part.cost)} + {part.unpriced} unpriced")
        per.append(f"{name}: {what}")
    return f"Session spend: {shown} estimated for {total.answers} answer{'s' if total.answers != 1 else ''} " \
           f"({'; '.join(per)})"


# -------------------------------------------------------------- the two UIs


class HumanUI:
    """Answers on stdout (as raw text, or Markdown by block in a terminal), the rest on stderr."""

    json_mode = False

    def __init__(self, stdout: Console, stderr: Console, *, markdown: bool = False) -> None:
        self.stdout = stdout
        self.stderr = stderr
        self.markdown = markdown
        self._renderer: StreamRenderer | None = None
        self._waiting: WaitIndicator | None = None

    @property
    def interactive(self) -> bool:
        return self.stdout.is_terminal

    # an answer's life: begin → text* → done | stopped | failed (close() always)
    def begin(self, trying: Callable[[], str | None], likely_cold: Callable[[str], bool] = lambda name: False) -> None:
        self._waiting = WaitIndicator(self.stderr, trying, likely_cold=likely_cold)
        self._waiting.start()
        self._renderer = StreamRenderer(self.stdout, markdown=self.markdown)

    def tick(self) -> None:
        if self._waiting is not None:
            self._waiting.tick()

    def text(self, text: str) -> None:
        if self._waiting is not None:
            self._waiting.stop()
            self._waiting = None
        if self._renderer is not None:
            self._renderer.feed(text)

    def close(self) -> None:
        if self._waiting is not None:
            self._waiting.stop()
            self._waiting = None
        if self._renderer is not None:
            self._renderer.finish()
            self._renderer = None

    def done(self, answer: Answer) -> None:
        self.close()
        for line in tool_call_lines(answer):  # part of the answer: stdout, dim
            self.stdout.print(f"[dim]{escape(line)}[/dim]", highlight=False, soft_wrap=True)
        self._note(stats_line(answer))
        for line in fallback_lines(answer.fallback):
            self._note(line)

    def stopped(self, answer: Answer | None, *, final: bool) -> None:
        self.close()
        if answer is not None:
            self._note(stats_line(answer))
        if not final:
            self._note("(stopped" + ("; the partial answer is kept" if answer else "") + ")")

    def error(self, exc: GpuctlError, *, final: bool) -> None:
        """In the REPL, show the error and go on; a final error is shown by cli/main once."""
        self.close()
        if not final:
            self.stderr.print(f"[bold red]Error:[/bold red] {escape(exc.message)}", highlight=False)
            if exc.hint:
                self._note(f"Hint: {exc.hint}")

    def interrupted(self) -> None:
        self.close()

    # slash commands and session notes
    def show(self, text: str, data: dict[str, Any] | None = None) -> None:
        """A result the user asked for (/cost, /help): data on stdout."""
        self.stdout.print(escape(text), highlight=False, soft_wrap=True)

    def note(self, text: str) -> None:
        self._note(text)

    def prompt(self, text: str) -> None:
        """The input prompt when there is no line editor (stdout is not a terminal): stderr."""
        self.stderr.file.write(text)
        self.stderr.file.flush()

    def _note(self, text: str) -> None:
        self.stderr.print(f"[dim]{escape(text)}[/dim]", highlight=False, soft_wrap=True)


class JsonUI:
    """One JSON object per line on stdout: chunks, then a summary (or an error) per answer.

    An error line is the envelope every `--json` command prints (`gpuctl_result_version`,
    `command`, `status`, `exit_code`, `timestamp`, `data`, `errors`) plus `"type": "error"`, so
    a script reads it as it reads any gpuctl failure; `final` says whether the chat ended
    (then `exit_code` is the process's) or goes on (a failed answer in the REPL: null)."""

    json_mode = True
    interactive = False
    markdown = False  # answers are JSON; kept so every UI has the same attributes

    def __init__(self, emit: Callable[[Any], None], out: Output | None = None) -> None:
        from gpuctl.cli.output import Output

        self.emit = emit
        self.out = Output(json_mode=True, command_parts=["chat"]) if out is None else out

    def _error_line(self, kind: str, message: str, hint: str | None, exit_code: int, *, final: bool) -> dict[str, Any]:
        doc = self.out.error_document(kind, message, hint=hint, exit_code=exit_code)
        return {"type": "error", **doc, "exit_code": exit_code if final else None, "final": final,
                "error": kind, "message": message, "hint": hint}

    def begin(self, trying: Callable[[], str | None], likely_cold: Callable[[str], bool] = lambda name: False) -> None:
        pass

    def tick(self) -> None:
        pass

    def text(self, text: str) -> None:
        self.emit({"type": "chunk", "text": text})

    def close(self) -> None:
        pass

    def done(self, answer: Answer) -> None:
        self.emit(answer.summary())

    def stopped(self, answer: Answer | None, *, final: bool) -> None:
        if answer is not None:
            self.emit(answer.summary())
        if final:
            self.interrupted()
        else:
            self.emit({"type": "stopped", "partial_kept": answer is not None})

    def error(self, exc: GpuctlError, *, final: bool) -> None:
        self.emit(self._error_line(type(exc).__name__, exc.message, exc.hint, exc.exit_code, final=final))

    def interrupted(self) -> None:
        self.emit(self._error_line("Interrupted", "interrupted", None, EXIT_INTERRUPTED, final=True))

    def show(self, text: str, data: dict[str, Any] | None = None) -> None:
        self.emit({"type": "info", "message": text, **(data or {})})

    def note(self, text: str) -> None:
        self.emit({"type": "note", "message": text})

    def prompt(self, text: str) -> None:
        pass  # stdout carries only JSON lines


ChatUI = HumanUI | JsonUI


def make_ui(out: Output) -> ChatUI:
    """The UI for this run: NDJSON with --json, else for people, on the command's consoles."""
    return JsonUI(out.print_json, out) if out.json_mode else HumanUI(out.stdout, out.stderr)
