//! `berth`: a container registry server, a daemonless registry client and an image builder.
//!
//! This file parses the command line and hands each subcommand to its module: the grammar is in
//! `args/`, the registry client's commands in `commands/` (one function each), the builder's in
//! `commands/build/`, the server in `serve.rs`. Every command fails with an `exit::Failure`,
//! which says the exit code and the hint.

mod args;
mod commands;
mod config;
mod config_keys;
mod connect;
mod exit;
mod gc;
mod index;
mod logging;
mod output;
mod parse;
mod platforms;
mod progress;
mod serve;

use std::process::ExitCode;

use clap::Parser as _;

use crate::args::{Cli, Command};

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
            Command::Serve(args) => serve::run(args).await.map_err(serve::failure),
            Command::Index(args) => index::run(args).await,
            Command::Gc(args) => gc::run(args).await,
            Command::Client(cmd) => commands::run(cmd).await,
            Command::Build(cmd) => commands::build::run(*cmd).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("{}", failure.render());
            failure.exit_code()
        }
    }
}
