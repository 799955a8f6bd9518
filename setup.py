"""Builds the one compiled piece: the forwarding fan-out (server/media/_fanout.c).

Everything else is in pyproject.toml. ``pip install -e .`` (scripts/bootstrap)
compiles it with the system C compiler and Python's headers; why it is C is in
the README (*Forwarding benchmark*) and docs/forwarding.md.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "server.media._fanout",
            sources=["server/media/_fanout.c"],
            extra_compile_args=["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"],
            optional=False,
        )
    ]
)
