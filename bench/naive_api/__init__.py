"""A naive contacts list for ``bench/bench_api.py``: a plain DRF ``ModelSerializer`` over a plaintext table.

Bench-only: the product never imports it. ``bench.naive_api.settings`` serves
it beside the whole project, in the same gunicorn process as the real API.
"""
