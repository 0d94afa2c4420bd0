//! growpart: implementation in progress.
