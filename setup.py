"""Installs distral_tf, its baselines and its flag definitions."""

import re
from pathlib import Path

from setuptools import find_packages, setup

_VERSION = re.search(
    r'__version__ = "([^"]+)"',
    Path(__file__).with_name("distral_tf").joinpath("__init__.py").read_text(),
).group(1)

setup(
    name="distral_tf",
    version=_VERSION,
    description="Distral: Robust Multitask Reinforcement Learning (Teh et al., 2017) in TensorFlow/Keras.",
    long_description=Path(__file__).with_name("README.md").read_text(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["distral_tf", "distral_tf.*", "baselines", "baselines.*", "flags", "flags.*"]),
    # The C++ source of the RMSProp op, compiled at first use (distral_tf/model/kernels).
    package_data={"distral_tf.model.kernels": ["*.cc"]},
    python_requires=">=3.10",
    install_requires=[
        "tensorflow-cpu>=2.16; platform_machine=='x86_64' or platform_machine=='AMD64'",
        "tensorflow>=2.16; platform_machine!='x86_64' and platform_machine!='AMD64'",
        "keras>=3",
        "numpy",
        "gymnasium>=1.0",
        "absl-py",
        "tensorboard",
        "matplotlib",
        "vizdoom>=1.2",
        "labmaze",
    ],
    extras_require={
        # Sweeps and single runs on a Ray cluster (--backend=ray of distral_tf.sweep and distral_tf.run);
        # see docs/cluster.md.
        "ray": ["ray>=2.9"],
        # Videos of evaluated episodes (python -m distral_tf.evaluate --video_dir=...): ffmpeg ships in the wheel.
        "video": ["imageio>=2.30", "imageio-ffmpeg>=0.5"],
        # Experiment tracking besides TensorBoard (python -m distral_tf.run --track=wandb|mlflow).
        "wandb": ["wandb>=0.17"],
        "mlflow": ["mlflow>=2.10"],
        "test": ["pytest", "pytest-xdist", "ruff", "ray>=2.9", "imageio>=2.30", "imageio-ffmpeg>=0.5", "wandb>=0.17",
                 "mlflow>=2.10"],
        # DeepMind Lab has no wheel: build it with Bazel (see README and WORKSPACE).
        "dmlab": [],
    },
)
