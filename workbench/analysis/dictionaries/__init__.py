"""Sparse dictionaries: WriteSAE (rank-one atoms for a head's state writes, installed in place of the native
write at one position) and an ordinary sparse autoencoder on any hook."""

from .install import install_write, replace_write
from .io import load_dictionary, save_dictionary
from .metrics import atom_usage, code_usage, write_reconstruction_metrics
from .sae import SAEConfig, SparseAutoencoder
from .splice import cache_activations, reconstruction_metrics, spliced_loss
from .substitution import find_firings, substitution_test, wilson_interval, win_rate
from .training import train_sae, train_write_sae
from .write_sae import WriteSAE, WriteSAEConfig
from .writes import collect_writes, state_writes, write_mixer

__all__ = ["atom_usage", "code_usage", "write_reconstruction_metrics", "SAEConfig", "SparseAutoencoder", "WriteSAE", "WriteSAEConfig", "cache_activations", "collect_writes",
           "find_firings", "install_write", "load_dictionary", "reconstruction_metrics", "replace_write",
           "save_dictionary", "spliced_loss", "state_writes", "substitution_test", "train_sae", "train_write_sae",
           "wilson_interval", "win_rate", "write_mixer"]
