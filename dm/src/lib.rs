//! Device-mapper ioctls: implementation in progress.
