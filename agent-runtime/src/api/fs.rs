//! File API wire types (`/v1/fs/*`).
