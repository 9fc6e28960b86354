//! `berth`: a container registry server, a daemonless registry client and an image builder.
//!
//! Each group of subcommands lives in its own module; this file only wires them together and maps
//! errors to exit codes.

mod build_cmds;
mod client_cmds;
mod config;
mod logging;
mod serve;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Berth: an OCI registry server, registry client and image builder in one binary.
#[derive(Parser)]
#[command(name = "berth", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the registry server (OCI Distribution Spec v1.1, Docker Registry HTTP API V2).
    Serve(serve::ServeArgs),
    #[command(flatten)]
    Client(client_cmds::ClientCommand),
    #[command(flatten)]
    Build(Box<build_cmds::BuildCommand>),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve(args) => serve::run(args).await.map_err(|e| (1u8, e)),
            Command::Client(cmd) => client_cmds::run(cmd).await,
            Command::Build(cmd) => build_cmds::run(*cmd).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err((code, err)) => {
            eprintln!("error: {err:#}");
            ExitCode::from(code)
        }
    }
}
