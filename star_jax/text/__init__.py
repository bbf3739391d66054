"""Text conditioning: the umT5 encoder (Flax), its tokenizer, and prompt -> DiT text context."""
