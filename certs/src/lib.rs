//! TLS material: PEM loading, reload on file change, test CA generation.
