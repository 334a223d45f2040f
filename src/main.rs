//! The `tandem` binary: read the settings, start logging, serve until SIGINT/SIGTERM; or run
//! one of its subcommands (`tandem token`, `tandem healthcheck`).

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use tandem::config::{Cli, Command, Config, LogFormat};
use tandem::server;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Token(args)) => {
            tandem::auth::mint(&args).map(|token| println!("{token}")).map_err(Into::into)
        }
        Some(Command::Healthcheck(config)) => tandem::healthcheck::check(&config).await,
        None => serve(cli.config).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // Logged too when serving; this line is for whoever started the process.
            let why = explain(&err);
            tracing::error!(error = %why, "tandem stopped");
            eprintln!("tandem: {why}");
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes in one line, each cause only where the message before does not
/// already say it.
fn explain(err: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in err.chain().map(ToString::to_string) {
        if !line.contains(&cause) {
            if !line.is_empty() {
                line.push_str(": ");
            }
            line.push_str(&cause);
        }
    }
    line
}

async fn serve(config: Config) -> anyhow::Result<()> {
    init_logging(&config);
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    server::run(config, listener, server::shutdown_signal()).await
}

fn init_logging(config: &Config) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&config.log));
    let logs = tracing_subscriber::fmt().with_env_filter(filter);
    match config.log_format {
        LogFormat::Json => logs.json().with_current_span(true).with_span_list(false).init(),
        LogFormat::Text => logs.with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout())).init(),
    }
}
