//! Access wiring: the token key, the first admin, the refresh worker for `serve`, and the
//! `customs user|robot|role|audit` commands, which call the same `registry::Access` as `/api/v1`.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use auth::{Actions, RepoGlob, Role, TokenKeys};
use clap::Subcommand;
use meta::{AuditQuery, IdentityKind, Meta, SqlMeta};
use registry::{Access, Actor};
use tokio::sync::watch;

use crate::config::Config;

/// The signing key: the configured file, else `<data>/token-key.pem`, made (mode 0600) on first
/// start.
pub fn token_keys(config: &Config, data: &Path) -> anyhow::Result<TokenKeys> {
    let configured = !config.auth.token_key_file.as_os_str().is_empty();
    let path = if configured { config.auth.token_key_file.clone() } else { data.join("token-key.pem") };
    if !path.exists() {
        if configured {
            bail!("auth.token_key_file {} does not exist", path.display());
        }
        write_private(&path, &TokenKeys::generate_pem())?;
        tracing::info!(path = %path.display(), "made a new token signing key");
    }
    let pem = std::fs::read_to_string(&path).with_context(|| format!("cannot read the token key {}", path.display()))?;
    TokenKeys::from_pem(&pem).with_context(|| format!("token key {}", path.display()))
}

fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    Ok(())
}

/// Opens access for `serve`: creates the first admin if asked and nobody exists, and refuses
/// to start a registry nobody could log in to.
pub async fn open(config: &Config, data: &Path, meta: Meta) -> anyhow::Result<Arc<Access>> {
    let keys = token_keys(config, data)?;
    let access = Access::new(meta, keys, config.auth.access()).await.context("cannot read access records")?;
    let a = &config.auth;
    if !a.admin_user.is_empty() {
        if a.admin_password.is_empty() {
            bail!("auth.admin_user is set but no auth.admin_password (set CUSTOMS_AUTH__ADMIN_PASSWORD)");
        }
        if access.bootstrap_admin(&a.admin_user, &a.admin_password).await.context("cannot create the first admin")? {
            tracing::info!(user = %a.admin_user, "created the first admin");
        }
    }
    if access.principals().await?.is_empty() {
        bail!(
            "authentication is on but there are no users: set auth.admin_user and CUSTOMS_AUTH__ADMIN_PASSWORD, \
             or run `customs user add NAME --admin` first"
        );
    }
    Ok(Arc::new(access))
}

/// Worker "access-refresh": picks up access changes made by other replicas or the CLI.
pub async fn refresh_worker(access: Arc<Access>, every: Duration, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            () = tokio::time::sleep(every) => {}
        }
        match access.refresh().await {
            Ok(true) => tracing::debug!(worker = "access-refresh", "access changed; caches emptied"),
            Ok(false) => {}
            Err(e) => tracing::warn!(worker = "access-refresh", error = %e, "cannot read access changes"),
        }
    }
}

#[derive(Subcommand)]
pub enum UserCommand {
    /// Add a user; the password is read from stdin (one line).
    Add {
        name: String,
        /// Also grant admin over every repository.
        #[arg(long)]
        admin: bool,
    },
    /// Set a user's password, read from stdin.
    Passwd { name: String },
    /// Remove a user and its roles.
    Rm { name: String },
    /// List users and robots with their roles.
    List,
    /// Import users from an htpasswd file (bcrypt, as Distribution uses); existing names are kept.
    ImportHtpasswd { file: PathBuf },
}

#[derive(Subcommand)]
pub enum RobotCommand {
    /// Create a robot; prints its secret once.
    Create {
        name: String,
        /// NAMESPACE=ACTIONS, e.g. `team/**=pull,push` (repeatable).
        #[arg(long = "namespace", required = true)]
        namespaces: Vec<String>,
        /// Days until the secret stops working.
        #[arg(long)]
        expires_days: Option<u32>,
        #[arg(long, default_value = "")]
        description: String,
    },
    List,
    /// Revoke a robot: its secret and tokens stop working.
    Revoke { name: String },
}

#[derive(Subcommand)]
pub enum RoleCommand {
    /// Grant ROLE (reader, writer, maintainer, admin) over NAMESPACE (a glob) to a user, or
    /// reader to `anonymous`.
    Grant { principal: String, role: String, namespace: String },
    Revoke { principal: String, namespace: String },
}

/// One access command, run against the records in the data directory (the server may be running).
pub enum Command {
    User(UserCommand),
    Robot(RobotCommand),
    Role(RoleCommand),
    Audit { after: i64, limit: usize, actor: Option<String>, action: Option<String> },
}

/// The records of the data directory, for a CLI command (the server may be running).
pub async fn open_records(config: &Config) -> anyhow::Result<Arc<SqlMeta>> {
    Ok(Arc::new(crate::storage::records(config, &config.data, true).await?))
}

/// How the audit log names whoever runs a CLI command.
pub fn cli_actor_name() -> String {
    format!("cli:{}", std::env::var("USER").unwrap_or_else(|_| "unknown".into()))
}

pub fn run(config: Config, command: Command) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(async move {
        let meta = open_records(&config).await?;
        // The CLI issues no tokens: a throwaway key serves.
        let keys = TokenKeys::from_pem(&TokenKeys::generate_pem())?;
        let access = Access::new(Meta(meta.clone()), keys, config.auth.access()).await?;
        let actor_name = cli_actor_name();
        let actor = Actor { name: &actor_name, client: None };
        let result = command_on(&access, &actor, command).await;
        meta.close().await;
        result
    })
}

async fn command_on(access: &Access, actor: &Actor<'_>, command: Command) -> anyhow::Result<()> {
    match command {
        Command::User(UserCommand::Add { name, admin }) => {
            access.add_user(actor, &name, &read_password()?).await?;
            if admin {
                access.grant(actor, &name, Role::Admin, &RepoGlob::everything()).await?;
            }
            println!("added user {name}");
        }
        Command::User(UserCommand::Passwd { name }) => {
            access.set_password(actor, &name, &read_password()?).await?;
            println!("password of {name} changed");
        }
        Command::User(UserCommand::Rm { name }) => {
            access.remove(actor, &name, IdentityKind::User).await?;
            println!("removed user {name}");
        }
        Command::User(UserCommand::List) | Command::Robot(RobotCommand::List) => {
            for p in access.principals().await? {
                let grants: Vec<String> = p.grants.iter().map(|(ns, perm)| format!("{ns}={perm}")).collect();
                let expires = p.expires_at_ms.map(|e| format!(" expires={}", api_time(e))).unwrap_or_default();
                println!("{}\t{}\t{}{expires}", p.kind.as_str(), p.name, grants.join(" "));
            }
        }
        Command::User(UserCommand::ImportHtpasswd { file }) => {
            let text = std::fs::read_to_string(&file).with_context(|| format!("cannot read {}", file.display()))?;
            let (imported, skipped) = access.import_htpasswd(actor, &text).await?;
            println!("imported {} users; {} already existed and were left alone", imported.len(), skipped.len());
        }
        Command::Robot(RobotCommand::Create { name, namespaces, expires_days, description }) => {
            let mut grants = Vec::new();
            for ns in &namespaces {
                let (glob, actions) = ns.split_once('=').context("--namespace takes NAMESPACE=ACTIONS, e.g. team/**=pull")?;
                let actions = Actions::parse_list(actions, Actions::NONE).map_err(anyhow::Error::msg)?;
                grants.push((glob.parse::<RepoGlob>()?, actions));
            }
            let expires_in = expires_days.map(|d| Duration::from_secs(u64::from(d) * 86_400));
            let robot = access.create_robot(actor, &name, &grants, expires_in, &description).await?;
            println!("name: {}\nsecret: {}\n(the secret is shown only now)", robot.name, robot.secret);
        }
        Command::Robot(RobotCommand::Revoke { name }) => {
            let name = if name.starts_with("robot$") { name } else { format!("robot${name}") };
            access.remove(actor, &name, IdentityKind::Robot).await?;
            println!("revoked {name}");
        }
        Command::Role(RoleCommand::Grant { principal, role, namespace }) => {
            let role: Role = role.parse().map_err(anyhow::Error::msg)?;
            access.grant(actor, &principal, role, &namespace.parse()?).await?;
            println!("{principal} is {role} over {namespace}");
        }
        Command::Role(RoleCommand::Revoke { principal, namespace }) => {
            access.revoke(actor, &principal, &namespace.parse()?).await?;
            println!("{principal} holds no role over {namespace} now");
        }
        Command::Audit { after, limit, actor: who, action } => {
            let q = AuditQuery { after_id: after, limit, actor: who, action_prefix: action };
            for r in access.audit_log(&q).await? {
                let e = r.entry;
                let client = e.client.unwrap_or_default();
                let detail = e.detail.unwrap_or_default();
                println!("{}\t{}\t{}\t{}\t{}\t{client}\t{detail}", r.id, api_time(r.at_ms), e.actor, e.action, e.target);
            }
        }
    }
    Ok(())
}

fn read_password() -> anyhow::Result<String> {
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).context("cannot read the password from stdin")?;
    let password = line.trim_end_matches(['\n', '\r']).to_owned();
    if password.is_empty() {
        bail!("give the password on stdin, e.g. `printf '%s\\n' \"$PASSWORD\" | customs user add NAME`");
    }
    Ok(password)
}

fn api_time(ms: i64) -> String {
    oci::rfc3339((ms / 1000).max(0) as u64)
}
