//! VM tests.
