"""The long reliability suite (`make soak`; docs/reliability.md).

Its files are named ``soak_*.py``, so `make test` (pytest's default ``test_*.py``) never collects
them; `make soak` runs ``pytest tests/soak -o python_files=soak_*.py``. The scenarios themselves
live in tests/reliability_scenarios.py; tests/test_reliability.py runs them small.
"""
