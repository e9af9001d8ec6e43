//! Rust for the vendored Modal schema: client and server stubs of both services, from `modal.fds`.
use prost::Message;

fn main() {
    let here = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let fds = std::fs::read(here.join("../modal.fds")).expect("modal.fds (run trim.py first)");
    let fds = prost_types::FileDescriptorSet::decode(fds.as_slice()).expect("a FileDescriptorSet");
    let out = here.join("../../../src/modal/proto");
    std::fs::create_dir_all(&out).expect("mkdir");
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .build_transport(false)
        .out_dir(&out)
        .compile_fds(fds)
        .expect("generate");
    println!("wrote {}", out.display());
}
