//! The `ignis` command: parses flags and wires the library crates together. No FHIR rules
//! and no SQL live here.

mod admin;
mod audit;
mod bench;
mod cli;
mod config;
mod export;
mod import;
mod migrate;
mod reindex;
mod serve;

use crate::cli::{Cli, Command, ConfigCommand};

/// mimalloc: parsing, validating and indexing FHIR JSON allocate many small objects from
/// several threads at once, where glibc's allocator measurably slows imports.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let args = match config::expand(std::env::args_os().collect()) {
        Ok(args) => args,
        Err(error) => {
            eprintln!("ignis: {error:#}");
            return std::process::ExitCode::from(2);
        }
    };
    let cli = <Cli as clap::Parser>::parse_from(&args);
    if let Command::Config(ConfigCommand::Print(_)) = &cli.command {
        config::print(&args);
        return std::process::ExitCode::SUCCESS;
    }
    if let Command::Completions(args) = &cli.command {
        let mut command = <Cli as clap::CommandFactory>::command();
        clap_complete::generate(args.shell, &mut command, "ignis", &mut std::io::stdout());
        return std::process::ExitCode::SUCCESS;
    }
    init_tracing(&cli.log_level);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("ignis: cannot start the async runtime: {error}");
            return std::process::ExitCode::from(2);
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve(args) => serve::run(args).await,
            Command::Import(args) => import::run(args).await,
            Command::Export(args) => export::run(args).await,
            Command::Reindex(args) => reindex::run(args).await,
            Command::Migrate(args) => migrate::run(args).await,
            Command::Bench(args) => bench::run(args).await,
            Command::Admin(args) => admin::run(args).await,
            Command::Audit(command) => audit::run(command).await,
            Command::Completions(_) | Command::Config(_) => Ok(()),
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("ignis: {error:#}");
            std::process::ExitCode::from(2)
        }
    }
}

fn init_tracing(level: &str) {
    let filter =
        tracing_subscriber::EnvFilter::try_new(level).unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
}
