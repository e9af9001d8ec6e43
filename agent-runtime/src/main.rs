fn main() -> std::process::ExitCode {
    sbx_agent::server::cli::main()
}
