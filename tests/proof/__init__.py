"""The proof suite: the running daemon under load, crashes, vendor and store faults, hostile input.

``make proof`` runs every scenario at full size and writes the results table; CI runs the reduced
size through pytest (``tests/proof/test_*.py``) and fails on any broken invariant.
"""
