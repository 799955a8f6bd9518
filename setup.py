"""Builds the compiled pieces: the forwarding fan-out (server/media/_fanout.c) and the
direct ingest's steady state with the REMB estimator (server/media/_ingest.c), and
the outbound SRTP the fan-out protects with (server/media/_outbound_srtp.c, on
OpenSSL's libcrypto).

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
            depends=["server/media/_forward_delay.h", "server/media/_socket_address.h"],
            extra_compile_args=["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"],
            optional=False,
        ),
        Extension(
            "server.media._ingest",
            sources=["server/media/_ingest.c"],
            depends=[
                "server/media/_forward_delay.h",
                "server/media/_socket_address.h",
                "server/media/_ingest_estimator.h",
                "server/media/_ingest_tally.h",
            ],
            # No fused multiply-add: the estimator must round as Python's floats do.
            extra_compile_args=[
                "-O2",
                "-ffp-contract=off",
                "-Wall",
                "-Wextra",
                "-Wno-unused-parameter",
            ],
            optional=False,
        ),
        Extension(
            "server.media._outbound_srtp",
            sources=["server/media/_outbound_srtp.c"],
            # OpenSSL's AES-GCM: the libcrypto Python's own ssl and hashlib use.
            libraries=["crypto"],
            extra_compile_args=["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"],
            optional=False,
        ),
    ]
)
