//! The gateway (or its simulator, or nginx) as an OS process of its own: its memory is its own,
//! it sees only the variables it is given, and it can be stopped with SIGTERM, killed with
//! SIGKILL mid-request and started again on the same port and database.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// How to start one process; kept so that it can be started again the same way.
#[derive(Debug, Clone)]
pub struct ProcessSpec {
    pub binary: PathBuf,
    /// Working directory (the gateway reads `.env` and writes its sandbox key there).
    pub dir: PathBuf,
    pub args: Vec<String>,
    /// The only variables the process sees, besides `PATH` and `HOME`.
    pub env: Vec<(String, String)>,
    /// Where stderr goes (appended across restarts); `None` inherits the harness's stderr.
    pub log: Option<PathBuf>,
    /// A program (with its arguments) that runs the binary and execs it, e.g.
    /// `prlimit --nofile=256:256 --`: the process keeps the binary's pid.
    pub launcher: Vec<String>,
}

impl ProcessSpec {
    pub fn new(binary: &Path, dir: &Path, args: &[&str]) -> Self {
        ProcessSpec {
            binary: binary.to_owned(),
            dir: dir.to_owned(),
            args: args.iter().map(|a| a.to_string()).collect(),
            env: Vec::new(),
            log: None,
            launcher: Vec::new(),
        }
    }

    /// Starts the binary through `launcher` (see [`ProcessSpec::launcher`]).
    pub fn under(mut self, launcher: &[&str]) -> Self {
        self.launcher = launcher.iter().map(|a| a.to_string()).collect();
        self
    }

    pub fn env(mut self, name: &str, value: impl Into<String>) -> Self {
        self.env.retain(|(k, _)| k != name);
        self.env.push((name.to_owned(), value.into()));
        self
    }

    pub fn log_to(mut self, path: PathBuf) -> Self {
        self.log = Some(path);
        self
    }
}

/// A running (or killed) process started from a [`ProcessSpec`]. Dropping it stops it: SIGTERM,
/// then SIGKILL after 15 s.
pub struct ManagedProcess {
    child: Option<std::process::Child>,
    spec: ProcessSpec,
    /// `http://127.0.0.1:port`.
    pub base: String,
    pub port: u16,
}

/// A free loopback port (bound and released; good enough on a quiet loopback).
pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

impl ManagedProcess {
    /// Starts the process; does not wait for it to be ready.
    pub fn spawn(spec: ProcessSpec, port: u16) -> anyhow::Result<ManagedProcess> {
        let mut process = ManagedProcess {
            child: None,
            spec,
            base: format!("http://127.0.0.1:{port}"),
            port,
        };
        process.start()?;
        Ok(process)
    }

    fn start(&mut self) -> anyhow::Result<()> {
        let spec = &self.spec;
        let mut command = match spec.launcher.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(&spec.binary);
                c
            }
            None => Command::new(&spec.binary),
        };
        command
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", std::env::var("HOME").unwrap_or_default())
            .args(&spec.args)
            .current_dir(&spec.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        for (k, v) in &spec.env {
            command.env(k, v);
        }
        match &spec.log {
            Some(path) => {
                let file = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .with_context(|| format!("opening {}", path.display()))?;
                command.stderr(file);
            }
            None => {
                command.stderr(Stdio::inherit());
            }
        }
        let child = command
            .spawn()
            .with_context(|| format!("starting {}", spec.binary.display()))?;
        self.child = Some(child);
        Ok(())
    }

    /// `mpesa-gateway serve [--sandbox]` from `spec` (its `GATEWAY_LISTEN` is set here), ready
    /// when `/health` answers 200.
    pub async fn gateway(spec: ProcessSpec, port: u16) -> anyhow::Result<ManagedProcess> {
        let spec = spec.env("GATEWAY_LISTEN", format!("127.0.0.1:{port}"));
        let mut process = ManagedProcess::spawn(spec, port)?;
        process
            .wait_ready("/health", Duration::from_secs(60))
            .await?;
        Ok(process)
    }

    /// `mpesa-gateway serve --sandbox` in `dir` with `env`, on a free port, ready when
    /// `/health` answers.
    pub async fn sandbox_gateway(
        binary: &Path,
        dir: &Path,
        env: &[(&str, &str)],
    ) -> anyhow::Result<ManagedProcess> {
        let mut spec = ProcessSpec::new(binary, dir, &["serve", "--sandbox"]);
        for (k, v) in env {
            spec = spec.env(k, *v);
        }
        ManagedProcess::gateway(spec, free_port()?).await
    }

    /// Waits until `GET path` answers 2xx; fails at once if the process exited.
    pub async fn wait_ready(&mut self, path: &str, within: Duration) -> anyhow::Result<()> {
        daraja::install_crypto_provider();
        // Loopback only: a proxy from the environment must not answer for the process.
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(2))
            .build()?;
        let url = format!("{}{path}", self.base);
        let deadline = Instant::now() + within;
        loop {
            if let Ok(r) = client.get(&url).send().await
                && r.status().is_success()
            {
                return Ok(());
            }
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                bail!(
                    "{} {} exited before it was ready: {status}{}",
                    self.spec.binary.display(),
                    self.spec.args.join(" "),
                    self.log_hint()
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "{url} did not answer 2xx within {within:?}{}",
                    self.log_hint()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn log_hint(&self) -> String {
        match &self.spec.log {
            Some(p) => format!(" (log: {})", p.display()),
            None => String::new(),
        }
    }

    /// What the process wrote to its log so far (empty without one).
    pub fn log(&self) -> String {
        self.spec
            .log
            .as_ref()
            .and_then(|p| std::fs::read_to_string(p).ok())
            .unwrap_or_default()
    }

    /// The exit status if the process has exited (it is then no longer running), `None` while
    /// it runs.
    pub fn try_exited(&mut self) -> anyhow::Result<Option<ExitStatus>> {
        let Some(child) = self.child.as_mut() else {
            bail!("the process is not running");
        };
        let status = child.try_wait()?;
        if status.is_some() {
            self.child = None;
        }
        Ok(status)
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// SIGKILL: no shutdown, no flush, nothing finished. Waits until the process is gone.
    pub fn kill9(&mut self) -> anyhow::Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill().context("SIGKILL")?;
            child.wait()?;
        }
        Ok(())
    }

    /// SIGTERM, without waiting: the process begins its graceful stop.
    pub fn sigterm(&self) -> anyhow::Result<()> {
        let pid = self.pid().context("the process is not running")?;
        let status = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .context("running kill")?;
        if !status.success() {
            bail!("kill -TERM {pid}: {status}");
        }
        Ok(())
    }

    /// Waits (without blocking the runtime) until the process exits by itself, and its status;
    /// an error after `within`, the process still running.
    pub async fn exited(&mut self, within: Duration) -> anyhow::Result<ExitStatus> {
        let deadline = Instant::now() + within;
        loop {
            let child = self.child.as_mut().context("the process is not running")?;
            if let Some(status) = child.try_wait()? {
                self.child = None;
                return Ok(status);
            }
            if Instant::now() > deadline {
                bail!("still running after {within:?}{}", self.log_hint());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGTERM and wait (15 s) for a graceful stop, then SIGKILL. The exit status when it
    /// stopped by itself, `None` when it had to be killed (or was not running).
    pub fn terminate(&mut self) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        None
    }

    /// Starts it again the same way, on the same port (after [`kill9`](Self::kill9) or
    /// [`terminate`](Self::terminate)); does not wait for it to be ready.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        if self.child.is_some() {
            bail!("restart of a process that is still running");
        }
        self.start()
    }

    /// Resident set size now (VmRSS), in KiB.
    pub fn rss_kib(&self) -> Option<u64> {
        proc_status_kib(self.pid()?, "VmRSS:")
    }

    /// Peak resident set size (VmHWM), in KiB.
    pub fn peak_rss_kib(&self) -> Option<u64> {
        proc_status_kib(self.pid()?, "VmHWM:")
    }
}

impl Drop for ManagedProcess {
    fn drop(&mut self) {
        self.terminate();
    }
}

/// A field of `/proc/PID/status`, in KiB.
pub fn proc_status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}
