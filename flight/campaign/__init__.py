"""Monte Carlo campaigns: many reproducible cases of the bundled scenarios with dispersed
parameters, flown in-process on Dask (``flight campaign run | report | replay``)."""
