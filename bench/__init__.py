"""`make bench`: the pipeline measured against bare Temporal on the same machine and dev server.

Not part of the product (not packaged, never imported by it). `python -m bench --help`.
"""
