//! ClamAV through clamd's local socket: each file is streamed with `zINSTREAM` (4-byte big-endian
//! chunk lengths, a zero length to end) and the reply is `stream: OK` or `stream: <sig> FOUND`.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;

pub struct Clamd {
    pub socket: PathBuf,
}

impl Clamd {
    /// Checks that clamd answers `PING` before a scan relies on it.
    pub fn ping(&self) -> Result<(), String> {
        match self.ask("PING")?.as_str() {
            "PONG" => Ok(()),
            other => Err(format!("clamd answered {other:?} to PING")),
        }
    }

    /// One short command (`zPING`, `zVERSION`) and its answer.
    fn ask(&self, command: &str) -> Result<String, String> {
        let mut s = UnixStream::connect(&self.socket).map_err(|e| format!("clamd at {}: {e}", self.socket.display()))?;
        s.set_read_timeout(Some(Duration::from_secs(10))).ok();
        s.write_all(format!("z{command}\0").as_bytes()).map_err(|e| e.to_string())?;
        let mut reply = Vec::new();
        s.read_to_end(&mut reply).map_err(|e| e.to_string())?;
        Ok(String::from_utf8_lossy(&reply).trim_end_matches('\0').trim().to_owned())
    }
}

impl scanner::malware::FileCheck for Clamd {
    fn engine(&self) -> &'static str {
        "clamav"
    }

    /// `ClamAV 1.0.7/27472/Sun Nov 22 09:31:02 2026`: the engine, and the signatures' version.
    fn version(&self) -> Result<String, String> {
        let v = self.ask("VERSION")?;
        if v.starts_with("ClamAV ") { Ok(v) } else { Err(format!("clamd answered {v:?} to VERSION")) }
    }

    fn check(&self, bytes: &[u8]) -> Result<Option<String>, String> {
        let mut s = UnixStream::connect(&self.socket).map_err(|e| format!("clamd: {e}"))?;
        s.set_read_timeout(Some(Duration::from_secs(60))).ok();
        s.set_write_timeout(Some(Duration::from_secs(60))).ok();
        let io = |e: std::io::Error| format!("clamd: {e}");
        s.write_all(b"zINSTREAM\0").map_err(io)?;
        for chunk in bytes.chunks(1 << 20) {
            s.write_all(&(chunk.len() as u32).to_be_bytes()).map_err(io)?;
            s.write_all(chunk).map_err(io)?;
        }
        s.write_all(&0u32.to_be_bytes()).map_err(io)?;
        let mut reply = Vec::new();
        s.read_to_end(&mut reply).map_err(io)?;
        let reply = String::from_utf8_lossy(&reply).trim_end_matches('\0').trim().to_owned();
        let verdict = reply.strip_prefix("stream: ").unwrap_or(&reply);
        if verdict == "OK" {
            Ok(None)
        } else if let Some(sig) = verdict.strip_suffix(" FOUND") {
            Ok(Some(sig.to_owned()))
        } else {
            Err(format!("clamd answered {reply:?}"))
        }
    }
}
