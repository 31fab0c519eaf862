"""The command line's terminal output: log lines printed above a progress bar, never through it."""

from __future__ import annotations

import io

from rich.console import Console

from reconciler import logs
from worker import cli
from worker.config import load_settings


def test_log_lines_go_above_the_bar_while_it_shows_and_back_to_stderr_after(monkeypatch, capsys):
    screen = io.StringIO()
    terminal = Console(file=screen, force_terminal=True, width=120)
    monkeypatch.setattr(cli.stderr, "_console", terminal)
    settings = load_settings(log_format="console")
    with cli._progress(disable=False, settings=settings) as bar:
        task = bar.add_task("onboarding", total=2)
        logs.get_logger().info("practice_onboarded", practice_id=7)
        bar.advance(task)
    drawn = screen.getvalue()
    assert "practice_onboarded" in drawn and "practice_id=7" in drawn  # printed by the bar's console
    assert "practice_onboarded" not in capsys.readouterr().err
    logs.get_logger().info("sweep_finished")
    assert "sweep_finished" in capsys.readouterr().err and "sweep_finished" not in screen.getvalue()


def test_no_bar_leaves_logging_alone(monkeypatch, capsys):
    monkeypatch.setattr(cli.stderr, "_console", Console(file=io.StringIO(), force_terminal=True))
    cli._configure_logging(load_settings(log_format="console"))
    with cli._progress(disable=True, settings=load_settings(log_format="console")):
        logs.get_logger().info("practice_onboarded", practice_id=8)
    assert "practice_onboarded" in capsys.readouterr().err
