//! Selector unit tests, run once per backend (see `for_each_backend`).
