//! GUID partition tables (see ../docs). Implementation in progress.
