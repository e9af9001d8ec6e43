fn main() {
    println!("sbx {} (the coding-agent sandbox CLI, not Docker's sbx)", env!("CARGO_PKG_VERSION"));
}
