//! The command line: `serve` (the default), `migrate`, `user …`, `projections rebuild`,
//! `schema export`, `key generate`, `bench`.

use std::io::BufRead;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};
use futures_util::FutureExt;

use crate::app::App;
use crate::auth::accounts;
use crate::config::{Config, random_base64};
use crate::domain::Actor;
use crate::domain::user::{self, Role};
use crate::domain::values::{DisplayName, Email, ModelMask, Password};
use crate::storage::Db;
use crate::storage::projections;
use crate::storage::projections::users::{self, UserRow};

#[derive(Parser)]
#[command(name = "liteskill", version, about = "Self-hosted AI chat server with a GraphQL API")]
pub struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (the default).
    Serve,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Manage accounts.
    #[command(subcommand)]
    User(UserCommand),
    /// Maintain the read tables.
    #[command(subcommand)]
    Projections(ProjectionsCommand),
    /// The GraphQL schema.
    #[command(subcommand)]
    Schema(SchemaCommand),
    /// Keys.
    #[command(subcommand)]
    Key(KeyCommand),
    /// Credentials stored encrypted.
    #[command(subcommand)]
    Secrets(SecretsCommand),
    /// Measure the server on a scratch database.
    #[command(subcommand)]
    Bench(crate::bench::BenchCommand),
}

#[derive(Subcommand)]
enum UserCommand {
    /// Create an account; the password is read from standard input.
    Add {
        #[arg(long)]
        email: String,
        #[arg(long)]
        name: String,
        /// `admin` or `user`; by default the first account is admin.
        #[arg(long, value_parser = parse_role)]
        role: Option<Role>,
    },
    /// List every account.
    List,
    /// Make an account `admin` or `user`.
    SetRole {
        email: String,
        #[arg(value_parser = parse_role)]
        role: Role,
    },
    /// Set a new password (read from standard input) and end the account's sessions.
    SetPassword { email: String },
    /// Stop an account from signing in and end its sessions.
    Disable { email: String },
    /// Allow a disabled account to sign in again.
    Enable { email: String },
    /// Limit the models an account may use to ids matching a regular expression
    /// (entirely); without MASK, allow all.
    SetModelMask { email: String, mask: Option<String> },
}

#[derive(Subcommand)]
enum ProjectionsCommand {
    /// Empty every read table and replay the event log into it.
    Rebuild,
}

#[derive(Subcommand)]
enum SchemaCommand {
    /// Print the schema in SDL (or write it to a file).
    Export {
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum KeyCommand {
    /// Print a new random key in base64: 32 bytes suit ENCRYPTION_KEY, 64 SECRET_KEY_BASE.
    Generate {
        #[arg(long, default_value_t = 32)]
        bytes: usize,
    },
}

#[derive(Subcommand)]
enum SecretsCommand {
    /// Re-encrypt every stored credential under ENCRYPTION_KEY; the keys they were
    /// encrypted with must be in ENCRYPTION_KEYS_PREVIOUS.
    Rotate,
}

fn parse_role(text: &str) -> Result<Role, String> {
    Role::parse(text).ok_or_else(|| format!("`{text}` is not a role (admin or user)"))
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(Config::from_env()?).await,
        Command::Migrate => {
            open_db(&Config::from_env()?).await?;
            println!("migrations applied");
            Ok(())
        }
        Command::User(command) => user(&open_db(&Config::from_env()?).await?, command).await,
        Command::Projections(ProjectionsCommand::Rebuild) => {
            let db = open_db(&Config::from_env()?).await?;
            let started = std::time::Instant::now();
            let replayed = db.write(|conn| projections::rebuild(conn).boxed()).await?;
            println!("rebuilt projections from {replayed} events in {:.2?}", started.elapsed());
            Ok(())
        }
        Command::Schema(SchemaCommand::Export { output }) => {
            let sdl = crate::graphql::sdl();
            match output {
                Some(path) => std::fs::write(path, sdl)?,
                None => print!("{sdl}"),
            }
            Ok(())
        }
        Command::Key(KeyCommand::Generate { bytes }) => {
            println!("{}", random_base64(bytes));
            Ok(())
        }
        Command::Secrets(SecretsCommand::Rotate) => {
            let config = Config::from_env()?;
            let db = open_db(&config).await?;
            let secret_box = config.secret_box();
            let (resealed, total) = db
                .write(|conn| async move { crate::storage::secrets::reseal_all(conn, &secret_box).await }.boxed())
                .await?;
            println!("re-encrypted {resealed} of {total} secrets under key {}", config.secret_box().current_key_id());
            Ok(())
        }
        Command::Bench(command) => crate::bench::run(command).await,
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    for secret in &config.generated_secrets {
        tracing::warn!("{secret} is not set (or too weak): using a random one for this run; development only");
    }
    let address = SocketAddr::new(config.host, config.port);
    let served = App::start(config).await?;
    let listener = tokio::net::TcpListener::bind(address).await?;
    tokio::spawn(crate::auth::accounts::purge_expired(served.app.db.clone(), served.app.config.limits.login_window));
    tracing::info!("listening on http://{address} (GraphiQL at http://{address}/graphiql)");
    let app = served.app.clone();
    crate::http::serve(listener, served, shutdown_signal(), Duration::from_secs(10)).await?;
    crate::chat::stop_all(&app).await;
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(signal) => signal,
            Err(_) => return interrupt.await.unwrap_or(()),
        };
        tokio::select! {
            _ = interrupt => {},
            _ = terminate.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
    tracing::info!("shutting down");
}

async fn open_db(config: &Config) -> anyhow::Result<Db> {
    let db = Db::connect(&config.database_url, 4).await?;
    db.migrate().await?;
    Ok(db)
}

fn read_password() -> anyhow::Result<Password> {
    eprint!("password: ");
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(Password::parse(line.trim_end_matches(['\r', '\n']))?)
}

/// Runs an account command as the operator on the account with this email.
async fn administer(db: &Db, email: &str, command: user::Command) -> anyhow::Result<UserRow> {
    let user = accounts::find_by_email(db, email).await?.user_id();
    Ok(accounts::administer(db, Actor::System, user, command, None).await?.user)
}

async fn user(db: &Db, command: UserCommand) -> anyhow::Result<()> {
    let row = match command {
        UserCommand::Add { email, name, role } => {
            let email = Email::parse(&email)?;
            let name = DisplayName::parse(&name)?;
            let password = read_password()?;
            accounts::create_account(db, email, name, &password, role).await?
        }
        UserCommand::List => {
            let mut conn = db.conn().await?;
            for user in users::all(&mut conn).await? {
                let state = if user.disabled { "disabled" } else { "active" };
                println!("{}\t{}\t{}\t{}\t{}", user.user_id(), user.email, user.role, state, user.name);
            }
            return Ok(());
        }
        UserCommand::SetPassword { email } => {
            let user = accounts::find_by_email(db, &email).await?.user_id();
            accounts::set_password(db, user, &read_password()?).await?.user
        }
        UserCommand::SetRole { email, role } => administer(db, &email, user::Command::SetRole { role }).await?,
        UserCommand::Disable { email } => administer(db, &email, user::Command::Disable).await?,
        UserCommand::Enable { email } => administer(db, &email, user::Command::Enable).await?,
        UserCommand::SetModelMask { email, mask } => {
            let mask = mask.as_deref().map(ModelMask::parse).transpose()?;
            administer(db, &email, user::Command::SetModelMask { mask }).await?
        }
    };
    let state = if row.disabled { "disabled" } else { "active" };
    println!("{}\t{}\t{}\t{}", row.user_id(), row.email, row.role, state);
    Ok(())
}
