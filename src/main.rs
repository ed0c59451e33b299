//! The `mescon` binary: parse the command line, set up logging, and serve (or migrate, or manage keys).

use clap::Parser;
use mescon::config::{Cli, Command, Config, KeysAction, LogFormat};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let config = match Config::resolve(&cli.settings) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("mescon: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    init_tracing(config.log_format);
    mescon::server::install_crypto_provider();
    let result = match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => mescon::server::run(config).await,
        Command::Migrate => migrate(&config).await,
        Command::Keys { action } => keys(&config, action),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn migrate(config: &Config) -> anyhow::Result<()> {
    let store = mescon::store::Store::open(&config.database_url).await?;
    tracing::info!(backend = ?store.backend(), "migrations applied");
    store.close().await;
    Ok(())
}

fn keys(config: &Config, action: KeysAction) -> anyhow::Result<()> {
    use mescon::keys::{Secrets, rotate_ring_file};
    match action {
        KeysAction::Print => print!("{}", Secrets::load(config)?.to_env_lines()),
        KeysAction::Generate => print!("{}", Secrets::generate_env_lines()),
        KeysAction::Rotate => {
            if config.encryption_keys.is_some() {
                anyhow::bail!(
                    "MESCON_ENCRYPTION_KEYS is set: rotate by putting a new kid:key first in that value"
                );
            }
            let kid = rotate_ring_file(config)?;
            println!("new message key {kid} now encrypts; older keys still decrypt");
        }
    }
    Ok(())
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn,tower_http=warn"));
    // Colour only on a terminal: log files and collectors get plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
