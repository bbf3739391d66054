"""Training data pipelines. They may import `star_jax`; `star_jax` never imports them. Reading a
user's video or scene is `star_jax.io`'s job.

    worlds/               procedural 4D worlds with ground truth (scenes, exact ray caster, camera
                          paths, source / target examples)
    make_default_world.py renders the embedded default world, star_jax/assets/default_world/
"""
