//! Compiles `proto/*.proto` in pure Rust (protox), so no `protoc` is needed on the machine.

fn main() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    let files = ["raft.proto", "cluster.proto"];
    for f in files {
        println!("cargo:rerun-if-changed={}", root.join(f).display());
    }
    let fds = protox::compile(files, [&root]).expect("the .proto files compile");
    // Maps as BTreeMaps: encodings (and the golden files that pin them) do not depend on
    // hash-map iteration order.
    tonic_prost_build::configure()
        .btree_map(".")
        .compile_fds(fds)
        .expect("tonic code generation succeeds");
}
