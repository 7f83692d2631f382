"""Recurrent Fast Weight Programmers (Irie et al. 2021) on code execution and sequential ListOps, at CPU scale.

    python -m case_studies.recurrent_fwp [--quick] [--out DIR]

See ``README.md`` in this directory for the protocol, the deviations from the paper and the results.
"""
