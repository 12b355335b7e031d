"""The zoo: small policies of every kind users bring, built by a seeded script (:mod:`tests.zoo.build`).

``tests.zoo.build.checkpoint(name)`` gives the path of a shipped checkpoint, rebuilding it (and caching it in
``tests/zoo/checkpoints/``) when it is missing. See ``tests/zoo/README.md``.
"""
