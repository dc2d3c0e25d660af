//! The customs binary: `customs serve` and, as the issues land, the operator commands.
//! Flags and glue only; everything else lives in the library crates.

mod access;
mod blobs_cmd;
mod clamd;
mod config;
mod db;
mod engines;
mod gate;
mod gc;
mod policy_cmd;
mod query;
mod records;
mod scan;
mod scrub;
mod serve;
mod source;
mod storage;
mod webhooks;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// jemalloc, not glibc's malloc: with many threads allocating and freeing large JSON trees
/// (reports, policy evidence), glibc's arenas spent a third of the CPU of re-judging in
/// malloc, free and consolidation (bench/RESULTS.md).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Parser)]
#[command(name = "customs", version, about = "A private OCI registry that inspects everything that enters")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

// Parsed once per run: the size of the largest variant (scan's flags) does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// Serve the registry (defaults: 127.0.0.1:5000, data in ./customs-data).
    Serve(ServeArgs),
    /// Print the effective settings (after the config file and CUSTOMS_* variables) as TOML.
    Config(ServeArgs),
    /// Manage users (passwords are read from stdin).
    User {
        #[command(flatten)]
        args: ServeArgs,
        #[command(subcommand)]
        command: access::UserCommand,
    },
    /// Manage robot accounts for CI and nodes.
    Robot {
        #[command(flatten)]
        args: ServeArgs,
        #[command(subcommand)]
        command: access::RobotCommand,
    },
    /// Grant and revoke roles over namespaces.
    Role {
        #[command(flatten)]
        args: ServeArgs,
        #[command(subcommand)]
        command: access::RoleCommand,
    },
    /// Inspect an image or a root filesystem: packages, SBOM and known vulnerabilities, offline.
    Scan {
        #[command(flatten)]
        args: ServeArgs,
        #[command(flatten)]
        scan: scan::ScanArgs,
    },
    /// Rego policies: test one on cases, evaluate one on evidence, show the shipped one.
    Policy {
        #[command(subcommand)]
        command: policy_cmd::PolicyCommand,
    },
    /// The local advisory DB: import, update, status.
    Db {
        #[command(flatten)]
        args: ServeArgs,
        #[command(subcommand)]
        command: db::DbCommand,
    },
    /// Ask across every inspected image (by vulnerability, by package, or one image's report), or
    /// for the storage quotas and what each namespace holds.
    Query {
        #[command(flatten)]
        args: ServeArgs,
        #[command(subcommand)]
        command: query::QueryCommand,
    },
    /// Waivers: findings set aside for some repositories until a date.
    Waiver {
        #[command(flatten)]
        args: ServeArgs,
        #[command(subcommand)]
        command: query::WaiverCommand,
    },
    /// Free what deletes and abandoned pushes left: one pass of garbage collection over the data
    /// directory of a stopped server.
    Gc {
        #[command(flatten)]
        args: ServeArgs,
        #[command(flatten)]
        gc: gc::GcArgs,
    },
    /// Read every stored blob back and hash it: damaged ones are moved aside and read as absent
    /// until pushed again. One pass over the data directory of a stopped server; exits 1 if any
    /// blob still in use is damaged.
    Scrub {
        #[command(flatten)]
        args: ServeArgs,
        #[command(flatten)]
        scrub: scrub::ScrubArgs,
    },
    /// The blobs themselves: copy a stopped server's blobs into S3, for replicas.
    Blobs {
        #[command(flatten)]
        args: ServeArgs,
        #[command(subcommand)]
        command: blobs_cmd::BlobsCommand,
    },
    /// The records themselves: copy a stopped server's meta.db into PostgreSQL, for replicas.
    Records {
        #[command(flatten)]
        args: ServeArgs,
        #[command(subcommand)]
        command: records::RecordsCommand,
    },
    /// Print the audit log: id, time, actor, action, target, client, detail.
    Audit {
        #[command(flatten)]
        args: ServeArgs,
        /// Entries after this id.
        #[arg(long, default_value_t = 0)]
        after: i64,
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// Only this actor's entries.
        #[arg(long)]
        actor: Option<String>,
        /// Only this action (`login` also matches `login.failed`).
        #[arg(long)]
        action: Option<String>,
    },
}

#[derive(clap::Args)]
pub struct ServeArgs {
    /// Address to listen on [env: CUSTOMS_LISTEN] [default: 127.0.0.1:5000]
    #[arg(long, global = true)]
    listen: Option<String>,
    /// Data directory [env: CUSTOMS_DATA] [default: ./customs-data]
    #[arg(long, global = true)]
    data: Option<PathBuf>,
    /// Config file (TOML)
    #[arg(long, env = "CUSTOMS_CONFIG", global = true)]
    config: Option<PathBuf>,
    /// Pull through an upstream registry: `/v2/NAME/<repository>/...` is fetched from URL's
    /// `<repository>` (repeatable; e.g. dockerhub=https://registry-1.docker.io)
    #[arg(long = "mirror", value_name = "NAME=URL")]
    mirrors: Vec<String>,
    /// The mirror that also serves names without a prefix that are not local repositories
    /// (for Docker's `registry-mirrors`)
    #[arg(long = "default-mirror", value_name = "NAME")]
    default_mirror: Option<String>,
}

impl ServeArgs {
    fn load(&self) -> anyhow::Result<config::Config> {
        let mut c = config::Config::load(self.config.as_deref(), std::env::vars())?;
        if let Some(l) = &self.listen {
            c.listen = l.clone();
        }
        if let Some(d) = &self.data {
            c.data = d.clone();
        }
        for flag in &self.mirrors {
            c.mirrors.push(config::Mirror::from_flag(flag)?);
        }
        if let Some(name) = &self.default_mirror {
            let Some(m) = c.mirrors.iter_mut().find(|m| &m.name == name) else {
                anyhow::bail!("--default-mirror {name}: no mirror of that name (give it with --mirror {name}=URL)");
            };
            m.default = true;
        }
        Ok(c)
    }
}

fn main() -> std::process::ExitCode {
    // glibc raises its mmap threshold after large frees, so that later large blocks (a password
    // hash's 19 MiB) come from per-thread arenas and stay resident. A fixed threshold keeps them
    // mapped and returned when freed.
    // SAFETY: called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => args.load().and_then(serve::run),
        Command::Config(args) => args.load().and_then(|mut c| {
            c.records.url = c.records.shown();
            print!("{}", toml::to_string(&c)?);
            Ok(())
        }),
        Command::User { args, command } => args.load().and_then(|c| access::run(c, access::Command::User(command))),
        Command::Robot { args, command } => args.load().and_then(|c| access::run(c, access::Command::Robot(command))),
        Command::Role { args, command } => args.load().and_then(|c| access::run(c, access::Command::Role(command))),
        Command::Audit { args, after, limit, actor, action } => {
            args.load().and_then(|c| access::run(c, access::Command::Audit { after, limit, actor, action }))
        }
        Command::Query { args, command } => args.load().and_then(|c| query::run(c, query::Command::Query(command))),
        Command::Waiver { args, command } => args.load().and_then(|c| query::run(c, query::Command::Waiver(command))),
        Command::Db { args, command } => args.load().and_then(|c| db::run(c, command)),
        Command::Gc { args, gc } => args.load().and_then(|c| gc::run(c, gc)),
        Command::Records { args, command } => args.load().and_then(|c| records::run(c, command)),
        Command::Blobs { args, command } => args.load().and_then(|c| blobs_cmd::run(c, command)),
        Command::Scrub { args, scrub } => match args.load().and_then(|c| scrub::run(c, scrub)) {
            Ok(code) => return std::process::ExitCode::from(code),
            Err(e) => Err(e),
        },
        Command::Policy { command } => match policy_cmd::run(command) {
            Ok(code) => return std::process::ExitCode::from(code),
            Err(e) => Err(e),
        },
        Command::Scan { args, scan } => match args.load().and_then(|c| scan::run(c, scan)) {
            Ok(code) => return std::process::ExitCode::from(code),
            Err(e) => Err(e),
        },
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("customs: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
