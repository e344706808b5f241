"""Modal: sdk.py (the seam around the modal SDK and CLI), deploy.py (the deploy spec, Modal's GPU
names, the ledger rows of a deployment), compat.py (the original package's names).

The verbs that use them (`deploy modal`, `destroy modal`) are gpuctl/ops/deploy.py.
"""
