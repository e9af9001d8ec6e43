//! The vendored subset of Modal's gRPC schema, as Rust (prost messages, tonic client and server
//! stubs). Generated, not hand-written: `providers/proto/modal/trim.py` reads the schema back from the
//! descriptor in the `modal` wheel (Apache-2.0, see `providers/proto/modal/LICENSE`) and keeps only what
//! sbx uses, with Modal's names and field numbers; `providers/proto/modal/gen` turns that into the files
//! under `proto/`, which are committed, so building sbx needs neither Python nor `protoc`. The test
//! crate's fake Modal serves the same generated services.
#![allow(missing_docs, unreachable_pub, clippy::all, clippy::pedantic)]

/// `modal.client`: the control plane (`ModalClient`).
pub mod client {
    include!("proto/modal.client.rs");
}

/// `modal.task_command_router`: exec and stdio in a running sandbox (`TaskCommandRouter`).
pub mod task_command_router {
    include!("proto/modal.task_command_router.rs");
}
