//! The processes measured: the gateway and the floor, each its own OS process so its memory is
//! its own.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

pub struct Child {
    child: std::process::Child,
    pub base: String,
}

impl Child {
    /// `mpesa-gateway serve --sandbox` in `dir`, ready when `/health` answers.
    pub async fn gateway(binary: &Path, dir: &Path, env: &[(&str, &str)]) -> anyhow::Result<Child> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let mut command = Command::new(binary);
        command
            .args(["serve", "--sandbox"])
            .current_dir(dir)
            .env("GATEWAY_LISTEN", format!("127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        for (k, v) in env {
            command.env(k, v);
        }
        let child = command
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let gw = Child {
            child,
            base: format!("http://127.0.0.1:{port}"),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(r) = reqwest::get(format!("{}/health", gw.base)).await
                && r.status().is_success()
            {
                return Ok(gw);
            }
            if Instant::now() > deadline {
                bail!("the gateway did not become healthy");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The floor binary on a free port (it prints its address).
    pub async fn floor(binary: &Path) -> anyhow::Result<Child> {
        let mut child = Command::new(binary)
            .arg("127.0.0.1:0")
            .stdout(Stdio::piped())
            .spawn()?;
        let mut line = String::new();
        BufReader::new(child.stdout.take().context("floor stdout")?).read_line(&mut line)?;
        Ok(Child {
            child,
            base: format!("http://{}", line.trim()),
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        // SIGTERM first: the gateway stops gracefully.
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The process's peak resident set size (VmHWM), in KiB.
pub fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}
