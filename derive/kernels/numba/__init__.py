"""The generated Numba kernels: one committed module per built-in cell,
written by ``derive build`` from the same kernel plan as the NumPy kernels
(:mod:`derive.render.numba_kernel`), with the same contract.

Importing one needs Numba (``pip install -e ".[fast]"``); load them with
``derive.kernels.load(name, backend="numba")``, which says so when Numba is
missing. The first call in a dtype compiles the step loops (a few seconds)
and caches them beside the module; a later process loads them from there.
"""
