"""Use cases: each written once, printing nothing; every face (CLI, hook, Python API, web) calls them."""
