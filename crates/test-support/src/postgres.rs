//! A real PostgreSQL for tests: a throwaway cluster (`initdb`) in a temporary directory, listening
//! on a free loopback port, stopped and removed on drop. Debian's `postgresql` package provides
//! the binaries (`scripts/test.sh` installs it); as root, the server runs as the `postgres` user,
//! which it insists on.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

pub struct Postgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    /// The server's options, for starting it again.
    options: String,
    databases: AtomicUsize,
}

impl Postgres {
    /// Starts a cluster. Panics, saying what is missing, when PostgreSQL is not installed or does
    /// not start: a test that needs it must not pass without it.
    pub fn start() -> Postgres {
        Postgres::launch(false)
    }

    /// Starts a cluster that takes only TLS connections from clients with a certificate: its own
    /// is for 127.0.0.1 (only), signed by a CA made for it ([`Postgres::ca_file`]), which also
    /// signed the client certificate of the `postgres` user ([`Postgres::client_certificate`]).
    /// Connections without TLS, or without that certificate, are refused.
    pub fn start_tls() -> Postgres {
        Postgres::launch(true)
    }

    /// The CA file a client verifies a [`Postgres::start_tls`] server with.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.crt")
    }

    /// The certificate and key (PEM) a client of a [`Postgres::start_tls`] server logs in as
    /// `postgres` with.
    pub fn client_certificate(&self) -> (PathBuf, PathBuf) {
        (self.dir.path().join("client.crt"), self.dir.path().join("client.key"))
    }

    fn launch(tls: bool) -> Postgres {
        let bin = binaries().expect("PostgreSQL is not installed (scripts/test.sh installs Debian's postgresql)");
        let dir = tempfile::Builder::new().prefix("customs-pg").tempdir().expect("a temporary directory");
        if unsafe { libc::geteuid() } == 0 {
            // The server refuses to run as root; its directory must be the postgres user's.
            run(Command::new("chown").args(["-R", "postgres:postgres"]).arg(dir.path()));
        }
        let data = dir.path().join("data");
        run(tool(&bin, "initdb").arg("-D").arg(&data).args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"]).arg("--locale=C.UTF-8"));
        let port = free_port();
        let mut options = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200",
            dir.path().display()
        );
        if tls {
            certificates(dir.path(), &data);
            std::fs::write(data.join("pg_hba.conf"), "local all all trust\nhostssl all all 127.0.0.1/32 cert\nhostnossl all all 127.0.0.1/32 reject\n")
                .expect("pg_hba.conf");
            options.push_str(" -c ssl=on -c ssl_cert_file=server.crt -c ssl_key_file=server.key -c ssl_ca_file=ca.crt");
        }
        run(tool(&bin, "pg_ctl").arg("-D").arg(&data).arg("-l").arg(dir.path().join("log")).args(["-w", "-o", &options, "start"]));
        Postgres { dir, bin, port, options, databases: AtomicUsize::new(0) }
    }

    /// Stops the server at once, as a crash does (`pg_ctl stop -m immediate`: no checkpoint,
    /// every session cut); [`Postgres::start_again`] brings it back on the same port.
    pub fn crash(&self) {
        run(tool(&self.bin, "pg_ctl").arg("-D").arg(self.dir.path().join("data")).args(["-m", "immediate", "-w", "stop"]));
    }

    /// Starts the server again after [`Postgres::crash`]; it recovers from its WAL.
    pub fn start_again(&self) {
        let (data, log) = (self.dir.path().join("data"), self.dir.path().join("log"));
        run(tool(&self.bin, "pg_ctl").arg("-D").arg(&data).arg("-l").arg(log).args(["-w", "-o", &self.options, "start"]));
    }

    /// Like [`Postgres::database`], but its commits are acknowledged only once written to the
    /// WAL (`synchronous_commit`, which the cluster turns off for speed), so that every commit
    /// acknowledged survives [`Postgres::crash`].
    pub fn durable_database(&self) -> String {
        let url = self.database();
        let name = url.rsplit('/').next().unwrap_or_default();
        self.sql(&format!("ALTER DATABASE {name} SET synchronous_commit = on"));
        url
    }

    /// A new, empty database; its URL. Its default collation is ICU's English, which does not
    /// order text byte by byte, as many a production database's does not.
    pub fn database(&self) -> String {
        let name = format!("customs_{}", self.databases.fetch_add(1, Ordering::Relaxed));
        self.sql(&format!("CREATE DATABASE {name} TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'en-US'"));
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }

    /// Runs `sql` as the superuser in the `postgres` database; what it printed.
    pub fn sql(&self, sql: &str) -> String {
        let psql = self.bin.join("psql");
        // Through the socket, which needs no certificate.
        let out = run(Command::new(psql).arg("-h").arg(self.dir.path()).args(["-p", &self.port.to_string(), "-U", "postgres", "-qAtc", sql]));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The server's log so far, for a failing test's message.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let data = self.dir.path().join("data");
        let mut stop = tool(&self.bin, "pg_ctl");
        stop.arg("-D").arg(&data).args(["-m", "immediate", "-w", "stop"]).stdout(Stdio::null()).stderr(Stdio::null());
        let _ = stop.status();
    }
}

/// A CA (`dir/ca.crt`), and the server's and a client's certificates and keys signed by it
/// (`dir/{server,client}.{crt,key}`, the server's and the CA copied into `data`), made with
/// openssl for this cluster alone.
fn certificates(dir: &Path, data: &Path) {
    let openssl = |args: &[&str]| run(Command::new("openssl").current_dir(dir).args(args));
    let key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];
    openssl(&[&["req", "-x509"][..], &key, &["-keyout", "ca.key", "-out", "ca.crt", "-days", "2", "-subj", "/CN=customs test CA"]].concat());
    std::fs::write(dir.join("server.ext"), "subjectAltName=IP:127.0.0.1\n").expect("server.ext");
    std::fs::write(dir.join("client.ext"), "extendedKeyUsage=clientAuth\n").expect("client.ext");
    // The client's name is the user it logs in as.
    for (name, subject) in [("server", "/CN=127.0.0.1"), ("client", "/CN=postgres")] {
        let (csr, crt, ext) = (format!("{name}.csr"), format!("{name}.crt"), format!("{name}.ext"));
        openssl(&[&["req"][..], &key, &["-keyout", &format!("{name}.key"), "-out", &csr, "-subj", subject]].concat());
        openssl(&["x509", "-req", "-in", &csr, "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-out", &crt, "-days", "2", "-extfile", &ext]);
    }
    for f in ["server.crt", "server.key", "ca.crt"] {
        std::fs::copy(dir.join(f), data.join(f)).expect("a certificate file");
    }
    // The server refuses a key others can read; as root, the files must be the postgres user's.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(data.join("server.key"), std::fs::Permissions::from_mode(0o600)).expect("the key's mode");
    if unsafe { libc::geteuid() } == 0 {
        run(Command::new("chown").arg("postgres:postgres").arg(data.join("server.crt")).arg(data.join("server.key")).arg(data.join("ca.crt")));
    }
}

/// The server's `name` tool, run as the `postgres` user when this is root.
fn tool(bin: &Path, name: &str) -> Command {
    if unsafe { libc::geteuid() } != 0 {
        return Command::new(bin.join(name));
    }
    let mut c = Command::new("runuser");
    c.args(["-u", "postgres", "--"]).arg(bin.join(name));
    c
}

/// The newest installed server's binaries (`/usr/lib/postgresql/<version>/bin`).
fn binaries() -> Option<PathBuf> {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
        .filter(|(_, bin): &(u32, PathBuf)| Path::new(&bin.join("postgres")).exists())
        .collect();
    found.sort();
    found.pop().map(|(_, bin)| bin)
}

fn free_port() -> u16 {
    let socket = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    socket.local_addr().expect("its address").port()
}

fn run(command: &mut Command) -> std::process::Output {
    let out = command.output().unwrap_or_else(|e| panic!("{command:?}: {e}"));
    assert!(
        out.status.success(),
        "{command:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}
