//! The `tandem` binary: read the settings, start logging, serve until SIGINT/SIGTERM; or run
//! one of its subcommands (`tandem token`).

use clap::Parser;
use tandem::config::{Cli, Command};
use tandem::server;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Some(Command::Token(args)) = cli.command {
        println!("{}", tandem::auth::mint(&args)?);
        return Ok(());
    }
    let config = cli.config;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&config.log));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    tracing_subscriber::fmt().with_env_filter(filter).with_ansi(ansi).init();
    let listener = tokio::net::TcpListener::bind(config.listen).await?;
    server::run(config, listener, server::shutdown_signal()).await
}
