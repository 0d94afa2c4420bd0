//! verity: implementation in progress.
