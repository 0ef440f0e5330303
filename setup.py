from setuptools import find_packages, setup

setup(
    name="clip3d-bench",
    version="0.1.0",
    description="Experiment-tracked benchmark of CLIP models aligning 3D shapes with language",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["harness", "harness.*", "models", "models.*", "trainer", "trainer.*",
                                    "registries", "registries.*", "runstore", "runstore.*",
                                    "renderers", "renderers.*", "leaderboard", "leaderboard.*"]),
    package_data={"models": ["model_configs/*.json"], "renderers": ["shaders/*"],
                  "harness": ["data/*.json"]},
    install_requires=[
        "torch>=2.1",
        "torchvision>=0.16",
        "open_clip_torch>=2.24",
        "sacred>=0.8.4,<0.9",  # harness.experiment overrides Experiment._create_run (tested)
        "setuptools<81",  # sacred imports pkg_resources at run time
        "pymongo>=4.6",
        "nx-27017>=0.8",
        "trimesh>=4.0",
        "moderngl>=5.10",
        "pillow>=10.0",
        "numpy>=1.24",
        "scipy>=1.10",
        "scikit-learn>=1.3",
        "threadpoolctl>=3.1",  # (scikit-learn needs it too) BLAS pools kept to one thread beside the captioner
        "nltk>=3.8",
        "pycocoevalcap>=1.2",
        "pandas>=2.0",
        "streamlit>=1.35",
        "altair>=5.0",
        "tqdm>=4.60",
        "peft>=0.10",
    ],
    extras_require={
        "test": ["pytest>=7.4", "pytest-benchmark>=4.0", "playwright>=1.40", "pyrender>=0.1.45",
                 "dask[distributed]>=2024.1", "ruff>=0.4", "tensorboard>=2.14"],
        "dask": ["dask[distributed]>=2024.1"],
        "tensorboard": ["tensorboard>=2.14"],
    },
    entry_points={"console_scripts": ["clip3d=harness.__main__:main"]},
)
