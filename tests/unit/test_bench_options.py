"""The recover benchmark's options: a bad ``--changes`` is a clear error before any server starts."""

from __future__ import annotations

import pytest

from bench.recover import DEFAULT_CHANGES, QUICK_CHANGES, _changes


def test_the_number_of_changes_comes_from_the_options():
    assert _changes([]) == DEFAULT_CHANGES
    assert _changes(["--quick"]) == QUICK_CHANGES
    assert _changes(["--quick", "--changes", "7"]) == 7


@pytest.mark.parametrize("argv", [["--changes"], ["--changes", "many"], ["--changes", "0"], ["--changes", "-3"]])
def test_a_bad_number_of_changes_is_refused_with_a_reason(argv):
    with pytest.raises(SystemExit) as refused:
        _changes(argv)
    assert "--changes" in str(refused.value)


# --- the runner (python3 dev.py bench) -----------------------------------------------------------

def _run(argv, monkeypatch, tmp_path):
    import bench.__main__ as runner

    ran = []
    monkeypatch.setattr(runner.importlib, "import_module", lambda name: ran.append(name))
    monkeypatch.setattr(runner, "DOC", tmp_path / "BENCHMARKS.md")
    return runner.main(argv), ran


def test_help_prints_the_usage_and_runs_nothing(monkeypatch, tmp_path, capsys):
    code, ran = _run(["--help"], monkeypatch, tmp_path)
    assert code == 0 and ran == []
    out = capsys.readouterr().out
    assert "--write" in out and "storm" in out


@pytest.mark.parametrize("argv", [["--bogus"], ["storm", "-x"], ["--rows", "many"], ["audit", "--rows"],
                                  ["reconcile", "--pool", "gevent"], ["pools", "--concurrency", "x"]])
def test_a_bad_option_is_refused_before_any_benchmark_runs(argv, monkeypatch, tmp_path, capsys):
    code, ran = _run(argv, monkeypatch, tmp_path)
    assert code == 2 and ran == []
    assert capsys.readouterr().err.strip()
    assert not (tmp_path / "BENCHMARKS.md").exists()


def test_the_targets_table_marks_each_row_met_or_missed():
    from bench.targets import Target, table

    rendered = table([Target("hook", "CPU at most 2x SET NX", "127 us", "SET NX 80 us", "1.58x (<= 2x)", True),
                      Target("reconcile", "CPU at most 3x a no-op", "9.5 ms", "no-op 1.3 ms", "7.35x (<= 3x)", False)])
    lines = rendered.splitlines()
    assert lines[2].endswith("| met |") and lines[3].endswith("| **missed** |")
    assert "SET NX 80 us" in lines[2]


def test_a_partial_run_does_not_rewrite_the_targets_table(monkeypatch, tmp_path):
    import bench.__main__ as runner
    from bench import targets

    doc = tmp_path / "BENCHMARKS.md"
    doc.write_text("# Benchmarks\n\n<!-- bench:targets -->\nfrom one whole run\n<!-- /bench:targets -->\n")
    monkeypatch.setattr(runner, "DOC", doc)
    monkeypatch.setattr(runner, "machine", lambda: "test machine")

    class Hook:
        @staticmethod
        def main():
            targets.record("hook", "t", figure="1", baseline="2", ratio="0.5x", met=True)

    monkeypatch.setattr(runner.importlib, "import_module", lambda name: Hook)
    monkeypatch.setattr(targets, "RECORDED", [])
    assert runner.main(["hook", "--write"]) == 0
    text = doc.read_text()
    assert "from one whole run" in text and "<!-- bench:hook -->" in text


def test_a_run_of_every_benchmark_writes_its_targets_table(monkeypatch, tmp_path):
    import bench.__main__ as runner
    from bench import targets

    doc = tmp_path / "BENCHMARKS.md"
    doc.write_text("# Benchmarks\n\n<!-- bench:targets -->\nan older run\n<!-- /bench:targets -->\n")
    monkeypatch.setattr(runner, "DOC", doc)
    monkeypatch.setattr(runner, "machine", lambda: "test machine")
    monkeypatch.setattr(targets, "RECORDED", [])

    class Any:
        @staticmethod
        def main(*_):
            targets.record("x", "a target", figure="1", baseline="2", ratio="0.5x", met=False)

    monkeypatch.setattr(runner.importlib, "import_module", lambda name: Any)
    assert runner.main(["--write"]) == 0
    text = doc.read_text()
    assert "an older run" not in text
    assert text.count("| x | a target | 1 | 2 | 0.5x | **missed** |") == len(runner.BENCHMARKS)


def test_a_failing_benchmark_is_reported_the_others_run_and_the_targets_table_stays(monkeypatch, tmp_path, capsys):
    import bench.__main__ as runner
    from bench import targets

    doc = tmp_path / "BENCHMARKS.md"
    doc.write_text("# Benchmarks\n\n<!-- bench:targets -->\nan older run\n<!-- /bench:targets -->\n")
    monkeypatch.setattr(runner, "DOC", doc)
    monkeypatch.setattr(runner, "machine", lambda: "test machine")
    monkeypatch.setattr(targets, "RECORDED", [])
    ran = []

    def load(name):  # noqa: ANN001, ANN202
        class Module:
            @staticmethod
            def main(*_):
                ran.append(name)
                if name == "bench.audit_year":
                    raise RuntimeError("the audit broke")
                targets.record("x", "t", figure="1", baseline="2", ratio="0.5x", met=True)
        return Module

    monkeypatch.setattr(runner.importlib, "import_module", load)
    assert runner.main(["--write"]) == 1
    assert len(ran) == len(runner.BENCHMARKS)
    assert "an older run" in doc.read_text() and "<!-- bench:audit -->" not in doc.read_text()
    assert "audit" in capsys.readouterr().err
