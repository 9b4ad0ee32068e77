"""Credentials from the environment never reach the console or the run log."""

from __future__ import annotations

import io

from components.shared import settings
from pipelines.console import FilteredConsole


def test_secrets_come_from_uris_and_secret_named_variables(monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "https://alice:p%40ss-w0rd@mlflow.example:443")
    monkeypatch.setenv("KFP_TOKEN", "eyJhbGciOi.token")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI")
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "false")  # named like one, harmless
    monkeypatch.setenv("LMFORGE_PASSWORD_HINT", "1")  # too plain a value to mask everywhere
    found = settings.secrets()
    assert {"alice:p%40ss-w0rd", "p%40ss-w0rd", "p@ss-w0rd", "eyJhbGciOi.token", "wJalrXUtnFEMI"} <= set(found)
    assert "false" not in found and "1" not in found and "alice" not in found
    text = "View run at https://alice:p%40ss-w0rd@mlflow.example:443/#/runs/1 (token eyJhbGciOi.token, p@ss-w0rd)"
    assert settings.redact(text) == "View run at https://***@mlflow.example:443/#/runs/1 (token ***, ***)"


def test_console_and_log_are_masked_line_by_line(monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://bob:hunter22@127.0.0.1:5000")
    console, log = io.StringIO(), io.StringIO()
    stream = FilteredConsole(console, log)
    stream.write("🏃 View run ingest at: http://bob:hun")  # a line arriving in pieces
    stream.write("ter22@127.0.0.1:5000/#/experiments/1\n[pretrain] step 10/20 loss 6.9\nlast line, no newline: hunter22")
    stream.close_line()
    assert "hunter22" not in console.getvalue() + log.getvalue()
    assert log.getvalue().splitlines() == ["🏃 View run ingest at: http://***@127.0.0.1:5000/#/experiments/1", "[pretrain] step 10/20 loss 6.9", "last line, no newline: ***"]
    assert "[pretrain] step 10/20 loss 6.9" in console.getvalue()
