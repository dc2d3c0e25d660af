//! A real `customs serve` process on 127.0.0.1:0, for end-to-end and crash tests.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

pub struct ServerProcess {
    child: Child,
    /// `127.0.0.1:PORT`
    pub addr: String,
    /// `http` or `https`
    pub scheme: &'static str,
    pub data: PathBuf,
}

impl ServerProcess {
    /// Starts `binary serve --listen 127.0.0.1:0 --data data` and waits until it listens.
    pub fn start(binary: &Path, data: &Path) -> anyhow::Result<ServerProcess> {
        ServerProcess::start_with(binary, data, &[])
    }

    pub fn start_with(binary: &Path, data: &Path, env: &[(&str, &str)]) -> anyhow::Result<ServerProcess> {
        ServerProcess::spawn(binary, data, env, Stdio::inherit())
    }

    /// Like [`ServerProcess::start_with`], with the server's log (stderr) written to `log`.
    pub fn start_logged(binary: &Path, data: &Path, env: &[(&str, &str)], log: &Path) -> anyhow::Result<ServerProcess> {
        ServerProcess::spawn(binary, data, env, Stdio::from(std::fs::File::create(log)?))
    }

    /// Like [`ServerProcess::start_logged`], with more arguments after `serve`'s own.
    pub fn start_args(binary: &Path, data: &Path, args: &[&str], env: &[(&str, &str)], log: &Path) -> anyhow::Result<ServerProcess> {
        ServerProcess::spawn_args(binary, data, args, env, Stdio::from(std::fs::File::create(log)?))
    }

    fn spawn(binary: &Path, data: &Path, env: &[(&str, &str)], stderr: Stdio) -> anyhow::Result<ServerProcess> {
        ServerProcess::spawn_args(binary, data, &[], env, stderr)
    }

    fn spawn_args(binary: &Path, data: &Path, args: &[&str], env: &[(&str, &str)], stderr: Stdio) -> anyhow::Result<ServerProcess> {
        let mut cmd = Command::new(binary);
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--data"])
            .arg(data)
            .args(args)
            .env("CUSTOMS_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn()?;
        let stdout = child.stdout.take().expect("piped stdout");
        let mut lines = BufReader::new(stdout).lines();
        let first = lines.next().transpose()?.unwrap_or_default();
        let listening = first.strip_prefix("customs listening on ");
        let (scheme, addr) = match listening.and_then(|l| l.split_once("://")) {
            Some(("http", addr)) => ("http", addr.to_owned()),
            Some(("https", addr)) => ("https", addr.to_owned()),
            _ => anyhow::bail!("customs did not start: first line {first:?}"),
        };
        // Keep draining stdout so the child never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Ok(ServerProcess { child, addr, scheme, data: data.to_owned() })
    }

    pub fn url(&self) -> String {
        format!("{}://{}", self.scheme, self.addr)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL: no chance to flush or clean up.
    pub fn kill_hard(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM and wait for a clean exit; returns whether it exited with success.
    pub fn stop(mut self) -> bool {
        self.terminate();
        self.child.wait().map(|s| s.success()).unwrap_or(false)
    }

    /// SIGTERM without waiting: the server starts its graceful shutdown.
    pub fn terminate(&self) {
        // SAFETY: kill(2) with our own child's pid and a valid signal number.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
    }

    /// Waits for the process to exit; returns whether it exited with success.
    pub fn wait(mut self) -> bool {
        self.child.wait().map(|s| s.success()).unwrap_or(false)
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
