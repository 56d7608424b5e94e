"""The `greetings` command: the end user's client, the local stack and the benchmarks.

It imports `flows/` (the worker's code) and is never imported by it: the worker image ships
`flows/` alone.
"""
