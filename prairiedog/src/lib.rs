//! prairiedog: implementation in progress.
