"""One script per DVC stage: parse params, call the ``vae`` package, write declared outputs.

Run them as ``python -m stages.<name>`` from the repository root (dvc.yaml does).
"""
