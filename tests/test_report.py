"""`orchestrate report`: one offline HTML file of a run (timeline, metrics, errors, children,
watermarks) or of a routine's history, rendered for real in headless Chromium."""
from __future__ import annotations

import html
import json
import re
from pathlib import Path

import pytest

from browser import render


def measured(dom: str) -> list[dict]:
    match = re.search(r'<pre id="measured"[^>]*>(.*?)</pre>', dom, re.S)
    assert match, "the page's script did not run"
    return json.loads(html.unescape(match.group(1)))


@pytest.fixture
def recorded_run(cli, write_routine, tmp_path):
    """A failed run with a retry wait, a slow task, metrics, a watermark, a secret and a child run."""
    child = write_routine({"routine_name": "kid", "executors": [
        {"name": "hi", "executor": "echo", "tasks": [{"task": "say", "args": {"text": "child"}}]}]}, "child.json")
    doc = {"routine_name": "pictured", "params": {"api_token": "tok-SECRET-123"}, "executors": [
        {"name": "first", "executor": "echo", "params": {"password": "${params.api_token}"},
         "tasks": [{"task": "say", "args": {"text": "abcd"}}, {"task": "remember", "args": {"next": 7}},
                   {"task": "run_routine", "args": {"path": str(child)}}]},
        {"name": "nap", "executor": "sleeper", "depends_on": ["first"],
         "tasks": [{"task": "sleep", "args": {"seconds": 0.6}}]},
        {"name": "flaky", "executor": "echo", "params": {"password": "${params.api_token}"}, "depends_on": ["nap"],
         "tasks": [{"task": "fail", "args": {"message": "broke"}, "retries": 1, "retry_delay": 0.4}]}]}
    done = cli(str(write_routine(doc)), "--json")
    assert done.returncode == 1, done.stderr
    return json.loads(done.stdout)["run_id"]


def test_report_of_a_run_has_everything_and_hides_secrets(cli, recorded_run, tmp_path):
    out = tmp_path / "run.html"
    made = cli("report", recorded_run[:8], "-o", str(out))
    assert made.returncode == 0, made.stderr
    assert made.stdout.strip() == str(out)
    page = out.read_text()
    assert "tok-SECRET-123" not in page and "****" in page
    assert "Traceback (most recent call last)" in page and "RuntimeError" in page
    assert "pictured" in page and "kid" in page  # the child run is nested in the parent's page
    assert page.count('data-run-id="') == 2
    assert re.search(r"<td>first\.remember</td><td>null</td><td>7</td>", page)  # watermark before/after
    assert re.search(r"first\.say</td>.*?<td class=num>4</td>", page)  # total_rows of say("abcd")
    # nothing is loaded from elsewhere: no URL an asset could come from
    assert not re.search(r"(src|href)=|url\(|@import", page)


def test_report_renders_to_scale_in_chromium(cli, recorded_run, tmp_path):
    out = tmp_path / "run.html"
    assert cli("report", recorded_run, "-o", str(out)).returncode == 0
    shot = tmp_path / "run.png"
    page = render(out, screenshot=shot)
    assert page.console == []
    assert 'data-ready="1"' in page.dom
    bars = measured(page.dom)
    kinds = [b["kind"] for b in bars if b["px"] > 0]
    assert kinds.count("failed") == 2 and "wait" in kinds and "succeeded" in kinds  # each attempt, the wait
    parent = [b for b in bars if b["span"] == bars[0]["span"]]
    for bar in parent:  # each bar's share of its track is its share of the run's time
        expected = bar["seconds"] / bar["span"] * bar["track"]
        if expected >= 2:
            assert bar["px"] == pytest.approx(expected, abs=1.5), bar
        else:  # drawn 2px wide so that a brief attempt stays visible
            assert bar["px"] == pytest.approx(2, abs=0.5), bar
    nap = max(parent, key=lambda b: b["seconds"])
    assert nap["seconds"] >= 0.6 and nap["px"] > 0.2 * nap["track"]
    assert shot.stat().st_size > 5000 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_browser_check_sees_console_errors(tmp_path):
    """The check above can fail: a page that logs, breaks and loads from elsewhere is caught."""
    bad = tmp_path / "bad.html"
    bad.write_text('<!DOCTYPE html><html><head><meta http-equiv="Content-Security-Policy" '
                   "content=\"default-src 'none'; script-src 'unsafe-inline'\"></head><body>"
                   '<img src="http://127.0.0.1:9/x.png"><script>console.error("oops");nope();</script></body></html>')
    console = render(bad).console
    assert any("oops" in line for line in console)
    assert any("Uncaught ReferenceError" in line for line in console)
    assert any("Content Security Policy" in line for line in console)


def test_history_report_shows_trend_rate_and_rows(cli, write_routine, tmp_path):
    good = write_routine({"routine_name": "daily", "params": {"fail": False}, "executors": [
        {"name": "s", "executor": "echo", "tasks": [{"task": "say", "args": {"text": "12345"}}]}]})
    for _ in range(3):
        assert cli(str(good)).returncode == 0
    bad = write_routine({"routine_name": "daily", "executors": [
        {"name": "s", "executor": "echo", "tasks": ["fail"]}]}, "bad.json")
    assert cli(str(bad)).returncode == 1
    out = tmp_path / "hist.html"
    made = cli("report", str(good), "--history", "30", "-o", str(out), "--json")
    assert made.returncode == 0, made.stderr
    assert json.loads(made.stdout)["report"] == str(out)
    page = out.read_text()
    assert "75% (3 of 4 finished)" in page
    assert page.count('class="tbar ') == 4 and page.count("<td class=num>5</td>") == 3
    assert render(out).console == []
    limited = cli("report", "daily", "--history", "2", "-o", "-")
    assert limited.returncode == 0 and limited.stdout.count('class="tbar ') == 2


def test_report_of_unknown_things_is_a_usage_error(cli):
    missing = cli("report", "no-such-run")
    assert missing.returncode == 2 and "no run 'no-such-run'" in missing.stderr
    nothing = cli("report", "nobody", "--history", "5")
    assert nothing.returncode == 2 and "no runs recorded for routine 'nobody'" in nothing.stderr
