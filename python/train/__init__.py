"""BaMCo training pipeline (installed as ``bamco_fast.train``)."""
