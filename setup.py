"""star-jax: a JAX/Flax real-time 4D world simulator (STAR / InSpatio-World)."""

from setuptools import find_packages, setup

setup(
    name="star-jax",
    version="0.1.0",
    description="JAX/Flax reimplementation of STAR (InSpatio-World): real-time 4D world simulation",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["star_jax", "star_jax.*", "data_pipelines", "data_pipelines.*", "experiments"]),
    # the embedded default world (a procedural scene made by data_pipelines.make_default_world)
    package_data={"star_jax": ["assets/default_world/*.*", "assets/default_world/depth/*.png",
                               "assets/tiny_model/**/*"]},
    install_requires=[
        "jax>=0.4.35",
        "flax>=0.10",
        "optax",
        "orbax-checkpoint",
        "grain",
        "einops",
        "ml-collections",
        "tensorflow-datasets",
        "array-record",
        "absl-py",
        "numpy",
        "scipy",
        "pillow",
        "av",
        "safetensors",
        "tqdm",
        # evaluation (star_jax.evaluate): DIS optical flow, feature tracks, PnP; the one-page report
        "opencv-python-headless",
        "matplotlib",
    ],
    extras_require={
        # parity references: the CPU torch build (pinned: it lies on disk), diffusers' Wan models
        "test": ["pytest", "pytest-xdist", "torch==2.13.0", "diffusers>=0.33", "transformers", "accelerate",
                 "nbclient", "nbformat", "ipykernel", "sentencepiece", "tokenizers",
                 "scikit-image",
                 # the geometry encoder's parity reference (depth-anything-3, installed --no-deps by .ci/run:
                 # its own requirements would replace numpy 2 and the torch pin) imports these
                 "addict", "omegaconf"],
        "notebook": ["jupyter", "ipywidgets"],
        "train": ["tensorboardX"],  # optional TensorBoard events beside metrics.jsonl
        # umT5 prompts: tokenizer.json / spiece.model, and torch to read Wan's .pth (all imported lazily)
        "text": ["tokenizers", "sentencepiece", "torch==2.13.0"],
    },
)
