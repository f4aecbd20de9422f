"""The public CTN-0094 data (three NIDA Clinical Trials Network opioid-treatment trials) in the
project's own contract, and the return-to-use outcome of Luo et al. (JAMA Psychiatry 2024)."""
