"""Serving a loaded model over an OpenAI-compatible HTTP API: the app (:mod:`emkit.serving.app`) and the
generation worker behind it (:mod:`emkit.serving.worker`)."""
