//! The registry client's subcommands, one short function each, grouped in files by what they
//! do. Each is a thin layer over `berth-client`: parse the arguments, call the library, print.
//! The image builder's subcommands are in [`build`].

mod blob;
pub mod build;
mod catalog;
mod cp;
mod login;
mod manifest;
mod ping;
mod pull;
mod push;
mod referrers;
mod rm;
mod size;
mod tag;
mod tags;

use crate::args::ClientCommand;
use crate::exit::Failure;

/// Runs a client subcommand.
pub async fn run(cmd: ClientCommand) -> Result<(), Failure> {
    match cmd {
        ClientCommand::Ping(a) => ping::ping(a).await,
        ClientCommand::Catalog(a) => catalog::catalog(a).await,
        ClientCommand::Search(a) => catalog::search(a).await,
        ClientCommand::Tags(a) => tags::tags(a).await,
        ClientCommand::Manifest(a) => manifest::manifest(a).await,
        ClientCommand::Config(a) => manifest::config(a).await,
        ClientCommand::Digest(a) => manifest::digest(a).await,
        ClientCommand::Blob(a) => blob::blob(a).await,
        ClientCommand::Size(a) => size::size(a).await,
        ClientCommand::Tag(a) => tag::tag(a).await,
        ClientCommand::Cp(a) => cp::cp(a).await,
        ClientCommand::Rm(a) => rm::rm(a).await,
        ClientCommand::RmRepo(a) => rm::rm_repo(a).await,
        ClientCommand::Pull(a) => pull::pull(a).await,
        ClientCommand::Push(a) => push::push(a).await,
        ClientCommand::Referrers(a) => referrers::referrers(a).await,
        ClientCommand::Login(a) => login::login(a).await,
        ClientCommand::Logout(a) => login::logout(a).await,
    }
}
