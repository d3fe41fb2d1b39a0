"""Small generic helpers: config, logging, seeding, distributed set-up, atomic I/O, imports.

A local package of this repository; it is not the unrelated `torchlight` on the package registry.
"""
