//! `docker`: sandboxes are containers (via bollard).
