"""Sources of the Triton python-backend models, copied into a repository as ``<model>/1/model.py``.

They run inside Triton's python-backend stub (the server environment made by
``export.triton.server``), import ``triton_python_backend_utils`` there, and are never imported
by this package itself.
"""
