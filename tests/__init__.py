"""The test suite as a package: `tests.stages` is then never mistaken for the
`stages` package, and pytest puts this checkout's root first on sys.path."""
