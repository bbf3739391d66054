"""Training data pipelines (grain / ArrayRecord / TFDS builders). They may import `star_jax`;
`star_jax` never imports them. Reading a user's video or scene is `star_jax.io`'s job."""
