"""fersnet-bench: FERSNet (Zhao et al., ICPR 2020), its ablations and a StarGAN baseline, benchmarked."""
__version__ = "0.1.0"
