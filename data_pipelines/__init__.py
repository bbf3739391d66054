"""Data pipelines: real-video ingest, manifests, depth/pose import, atomic writers.

Grain / ArrayRecord training pipelines live beside these (see later issues)."""
