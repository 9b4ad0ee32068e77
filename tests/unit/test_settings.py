"""components/shared/settings.py: the quiet environment every command and stage starts from."""

from __future__ import annotations

import os

from components.shared import settings


def test_the_tokenizer_threads_are_on_unless_the_user_said_otherwise(monkeypatch):
    # Packing measured 1.97x with the Rust pool on a free core (clean_tokenize/packing.py).
    monkeypatch.delenv("TOKENIZERS_PARALLELISM", raising=False)
    settings.quiet_environment()
    assert os.environ["TOKENIZERS_PARALLELISM"] == "true"
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "false")  # an oversubscribed host's choice stays
    settings.quiet_environment()
    assert os.environ["TOKENIZERS_PARALLELISM"] == "false"
