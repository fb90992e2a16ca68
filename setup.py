"""Map engine/, plugins/ and schema/ onto the watchkeeper.* namespace (see pyproject.toml)."""

from setuptools import find_packages, setup

ROOTS = ("engine", "plugins", "schema")

setup(
    packages=[
        f"watchkeeper.{name}"
        for root in ROOTS
        for name in (root, *(f"{root}.{sub}" for sub in find_packages(root)))
    ],
)
