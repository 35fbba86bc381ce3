"""csoa_nb: the package behind the CSoA book (Kou et al., WACV 2021)."""

__version__ = "0.1.0"
